"""Which root-cause category an incident most likely belongs to, learned from the knowledge
base's own labelled postmortems (their ``root_cause_category`` frontmatter, the only labels a
deployment has).

The method is a Bayesian kernel nearest-neighbour classifier over MiniLM embeddings:

- **Symptoms against symptoms.** An incident shows symptoms, a postmortem also tells the cause.
  Each postmortem gets an *opening* view: its text up to its first statement of cause (sections
  such as "Root cause" or "Resolution" left out), compared with the incident as written. A
  *full* view (the postmortem's best chunk) and their mean are the alternatives.
- **Every postmortem votes, with weight** ``exp((s - s_best) / tau)`` for cosine ``s``: with a
  small ``tau`` only the closest documents count; when similarities are flat the vote becomes
  the label distribution of the whole knowledge base, the prior.
- **A prior with ``m`` pseudo-votes** keeps weak evidence from overturning the base rates, either
  flat (``(V_c + m p_c) / (V + m)``) or down the label tree (``a/b/c``: each level's choice is
  smoothed toward its parent's mix of children, so a rare leaf backs off to its parent's most
  common child).
- **Calibrated on the knowledge base itself.** The view, ``tau``, the prior strength and the
  structure are chosen by leave-one-out over the labelled postmortems (each one's opening as a
  pseudo-incident, scored on the others) with the log-loss of its label, once per catalog
  generation; the base rates alone (no votes) are one of the candidates, so when no similarity
  beats them the ranking is the prior. Nothing comes from any evaluation set.

``exclude`` (the leave-one-out of the evaluation) removes documents from everything: the votes,
the class counts, the prior and the calibration. ``Ranking.used`` lists the documents a ranking
rests on, so a caller can check that an excluded one never contributed.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from copilot.context import IncidentSnapshot
from copilot.errors import CopilotError

log = logging.getLogger(__name__)

# A sentence that states a cause ends the symptom part of a postmortem (fixed a priori: the
# phrases postmortems use to introduce their cause, not fitted to any data).
CAUSE = re.compile(
    r"\b(root[ -]?causes?|caused by|(?:was|were|is|are) caused|due to|triggered by|because|"
    r"as a result of|resulted from|the cause)\b", re.IGNORECASE)
# Sections that tell the cause or the fix rather than what was seen.
CAUSE_SECTION = re.compile(
    r"cause|resolution|remediation|mitigation|\bfix|action items?|lessons?|follow[- ]?ups?|"
    r"what went wrong|contributing|next steps|prevention", re.IGNORECASE)
OPENING_WORDS = 200  # MiniLM reads ~256 word pieces; the opening of a postmortem fits
QUERY_DESCRIPTION_WORDS = 150
MAX_CATEGORIES = 20  # categories returned, best first

VIEWS = ("opening", "full", "mean")
TAUS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)  # cosine units; 0.5 is already close to the prior
PRIOR_VOTES = (0.5, 1.0, 2.0, 4.0, 8.0)
FLOOR = 1e-9  # probability floor in the calibration log-loss
CALIBRATION_PROBES = 1500  # pseudo-incidents at most (the calibration is quadratic)


class CategorizeLeak(CopilotError):
    """An excluded document reached a category ranking (a leave-one-out violation)."""


@dataclass(frozen=True)
class Params:
    view: str = "opening"
    tau: float = 0.05  # math.inf: no votes, the base rates alone
    prior: float = 1.0  # m, pseudo-votes of the prior (at each level of the tree)
    structure: str = "flat"


@dataclass(frozen=True)
class Ranking:
    """Categories with probabilities (best first), the neighbours that weighed most, the
    parameters the calibration chose and the documents the ranking rests on."""

    categories: list[tuple[str, float]]
    neighbours: list[tuple[str, str, float]]  # (doc id, category, similarity)
    params: Params
    used: frozenset[str]
    calibration_loss: float | None = None

    def at_depth(self, depth: int | None) -> list[tuple[str, float]]:
        return at_depth(self.categories, depth)


def at_depth(categories: Sequence[tuple[str, float]], depth: int | None
             ) -> list[tuple[str, float]]:
    """Probabilities of hierarchical labels summed up to ``depth`` (``a/b/c`` → ``a/b``)."""
    if not depth:
        return list(categories)
    out: dict[str, float] = {}
    for label, p in categories:
        key = "/".join(label.split("/")[:depth])
        out[key] = out.get(key, 0.0) + p
    return [(c, round(p, 4)) for c, p in sorted(out.items(), key=lambda x: (-x[1], x[0]))]


# -- texts ---------------------------------------------------------------------------------


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split())) if s]


def opening(sections: Iterable[tuple[str, str]], *, limit: int = OPENING_WORDS) -> str:
    """The symptom part of a postmortem from its chunks, as (section, text) in document order:
    per section (cause and fix sections skipped), the sentences before its first statement of
    cause, the section's later chunks included; at most ``limit`` words. When every section
    starts with its cause, the first sentence."""
    kept: list[str] = []
    first = ""
    told: set[str] = set()  # sections whose cause has been stated: the rest of them is skipped
    for section, text in sections:
        sentences = _sentences(text)
        first = first or (sentences[0] if sentences else "")
        if section in told or (section and CAUSE_SECTION.search(section)):
            continue
        for sentence in sentences:
            if CAUSE.search(sentence):
                told.add(section)
                break
            kept.append(sentence)
        if sum(len(s.split()) for s in kept) >= limit:
            break
    words = " ".join(kept or [first]).split()
    return " ".join(words[:limit])


def document_text(title: str, services: Sequence[str], body: str) -> str:
    head = title + (f"\nServices: {', '.join(services)}" if services else "")
    return f"{head}\n{body}".strip()


def incident_text(snap: IncidentSnapshot) -> str:
    """What the incident shows, in the shape of a postmortem's opening: title, services, the
    description, then the firing alerts, problem log patterns and recent changes."""
    parts = [snap.title]
    if snap.services:
        parts.append(f"Services: {', '.join(snap.services)}")
    if snap.description:
        parts.append(" ".join(snap.description.split()[:QUERY_DESCRIPTION_WORDS]))
    for alert in snap.alerts[:5]:
        parts.append(f"{alert.name}: {alert.summary}".strip(": "))
    for pattern in [p for p in snap.patterns if p.is_problem][:4]:
        parts.append(re.sub(r"<\*>", " ", pattern.template))
    for change in snap.changes[:3]:
        parts.append(f"{change.kind} of {change.service}: {change.description or ''}".strip(": "))
    return "\n".join(p for p in parts if p)


# -- the model -----------------------------------------------------------------------------


@dataclass
class _Labels:
    """Label paths as one-hot matrices per tree level (leaves padded with an end marker)."""

    classes: list[str]
    levels: list[np.ndarray]  # per level d: (C, K_d) leaf → ancestor at depth d

    @classmethod
    def of(cls, classes: list[str]) -> _Labels:
        paths = [c.split("/") for c in classes]
        depth = max(len(p) for p in paths)
        levels = []
        for d in range(1, depth + 1):
            nodes = ["/".join(p[:d]) + ("/$" * max(0, d - len(p))) for p in paths]
            names = sorted(set(nodes))
            index = {n: i for i, n in enumerate(names)}
            matrix = np.zeros((len(classes), len(names)))
            matrix[np.arange(len(classes)), [index[n] for n in nodes]] = 1.0
            levels.append(matrix)
        return cls(classes, levels)


def posterior(votes: np.ndarray, counts: np.ndarray, params: Params, labels: _Labels
              ) -> np.ndarray:
    """P(category) per row from kernel votes ``(q, C)`` and class counts (``(C,)`` or
    ``(q, C)``, per row for leave-one-out)."""
    counts = np.broadcast_to(counts, votes.shape)
    m = params.prior
    if params.structure == "flat":
        total = counts.sum(1, keepdims=True)
        prior = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
        return (votes + m * prior) / (votes.sum(1, keepdims=True) + m)
    out = np.ones_like(votes)
    parent_v = votes.sum(1, keepdims=True)
    parent_n = counts.sum(1, keepdims=True)
    for level in labels.levels:
        node_v = (votes @ level) @ level.T  # each leaf's ancestor at this depth
        node_n = (counts @ level) @ level.T
        share = np.divide(node_n, parent_n, out=np.zeros_like(node_n), where=parent_n > 0)
        out *= (node_v + m * share) / (parent_v + m)
        parent_v, parent_n = node_v, node_n
    return out


def kernel_votes(sims: np.ndarray, onehot: np.ndarray, tau: float) -> np.ndarray:
    """Each document votes for its label with ``exp((s - s_best) / tau)``; rows of ``sims``
    may hold ``-inf`` for documents left out. ``tau`` infinite: no votes."""
    if math.isinf(tau):
        return np.zeros((sims.shape[0], onehot.shape[1]))
    best = np.max(sims, axis=1, keepdims=True)
    weights = np.exp((sims - best) / tau)
    return weights @ onehot


@dataclass
class CategoryModel:
    """The labelled postmortems of one catalog generation, embedded: openings ``(n, d)``,
    chunks ``(N, d)`` grouped by document, and the document-to-document similarities the
    calibration needs."""

    generation: int
    embedder: Any
    doc_ids: list[str]
    categories: list[str]
    opening_vectors: np.ndarray
    chunk_vectors: np.ndarray
    chunk_starts: np.ndarray  # first chunk row of each document (chunks are grouped by doc)
    labels: _Labels = field(init=False)
    onehot: np.ndarray = field(init=False)
    _pair_sims: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _calibrated: dict[frozenset[str], tuple[Params, float]] = field(default_factory=dict,
                                                                    repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.labels = _Labels.of(sorted(set(self.categories)))
        index = {c: i for i, c in enumerate(self.labels.classes)}
        self.onehot = np.zeros((len(self.doc_ids), len(self.labels.classes)))
        self.onehot[np.arange(len(self.doc_ids)), [index[c] for c in self.categories]] = 1.0

    # similarities ------------------------------------------------------------------------
    def similarities(self, vectors: np.ndarray, view: str) -> np.ndarray:
        """Cosine of each query row to each document under ``view``: ``(q, n)``."""
        vectors = np.atleast_2d(vectors)
        if view == "opening":
            return vectors @ self.opening_vectors.T
        full = np.maximum.reduceat(vectors @ self.chunk_vectors.T, self.chunk_starts, axis=1)
        if view == "full":
            return full
        return (vectors @ self.opening_vectors.T + full) / 2

    def probes(self) -> np.ndarray:
        """The documents whose openings serve as pseudo-incidents in the calibration: all of
        them, or an even spread of ``CALIBRATION_PROBES`` in a large knowledge base."""
        n = len(self.doc_ids)
        if n <= CALIBRATION_PROBES:
            return np.arange(n)
        return np.unique(np.linspace(0, n - 1, CALIBRATION_PROBES).round().astype(np.int64))

    def pair_sims(self, view: str) -> np.ndarray:
        """The probes' openings against every document: ``(probes, n)``."""
        if view not in self._pair_sims:
            self._pair_sims[view] = self.similarities(self.opening_vectors[self.probes()], view)
        return self._pair_sims[view]

    # calibration -------------------------------------------------------------------------
    def calibrate(self, exclude: frozenset[str] = frozenset()) -> tuple[Params, float]:
        """The parameters with the lowest leave-one-out log-loss over the labelled documents
        not in ``exclude``: each one's opening is scored against all the others (its own
        document and the excluded ones masked, class counts without them)."""
        with self._lock:
            if exclude in self._calibrated:
                return self._calibrated[exclude]
        keep = self.kept(exclude)
        probes = self.probes()
        rows = keep[probes]  # probes that are not excluded
        onehot = self.onehot[keep]
        truth = self.onehot[probes[rows]]
        position = np.cumsum(keep) - 1  # a kept document's column among the kept ones
        own = position[probes[rows]]
        loo_counts = onehot.sum(0)[None, :] - truth  # per probe: the other documents' counts
        scored = (loo_counts * truth).sum(1) > 0  # a label no other document has is unlearnable
        best: tuple[float, Params] | None = None

        def consider(votes: np.ndarray, params: Params) -> None:
            nonlocal best
            p = (posterior(votes, loo_counts, params, self.labels) * truth).sum(1)
            loss = float(-np.mean(np.log(np.maximum(p[scored], FLOOR))))
            if best is None or loss < best[0] - 1e-12:
                best = (loss, params)

        if scored.sum() >= 2:
            consider(np.zeros_like(truth), Params("opening", math.inf, 1.0, "flat"))
            structures = ("flat", "tree") if len(self.labels.levels) > 1 else ("flat",)
            for view, tau in itertools.product(VIEWS, TAUS):
                sims = self.pair_sims(view)[rows][:, keep]  # a copy (fancy indexing)
                sims[np.arange(len(own)), own] = -np.inf
                votes = kernel_votes(sims, onehot, tau)
                for structure, m in itertools.product(structures, PRIOR_VOTES):
                    consider(votes, Params(view, tau, m, structure))
        chosen = (best[1], best[0]) if best else (Params(), float("nan"))
        with self._lock:
            self._calibrated[exclude] = chosen
            if len(self._calibrated) > 64:  # leave-one-out runs make one entry per case
                self._calibrated.pop(next(iter(self._calibrated)))
        return chosen

    def kept(self, exclude: frozenset[str]) -> np.ndarray:
        return np.array([d not in exclude for d in self.doc_ids], dtype=bool)

    # ranking -----------------------------------------------------------------------------
    def rank(self, text: str, *, exclude: Iterable[str] = (), params: Params | None = None,
             vector: np.ndarray | None = None) -> Ranking | None:
        """Categories for an incident's text, from the documents not in ``exclude``."""
        excluded = frozenset(str(e) for e in exclude) & frozenset(self.doc_ids)
        keep = self.kept(excluded)
        if keep.sum() == 0:
            return None
        loss = None
        if params is None:
            params, loss = self.calibrate(excluded)
        if vector is None:
            vector = self.embedder.embed_query(text)
        sims = self.similarities(vector, params.view)[:, keep]
        onehot = self.onehot[keep]
        votes = kernel_votes(sims, onehot, params.tau)
        probs = posterior(votes, onehot.sum(0), params, self.labels)[0]
        used = frozenset(d for d, k in zip(self.doc_ids, keep, strict=True) if k)
        if used & excluded:
            raise CategorizeLeak(f"excluded postmortems reached the ranking: {sorted(used & excluded)}")
        order = sorted(range(len(probs)), key=lambda c: (-probs[c], self.labels.classes[c]))
        categories = [(self.labels.classes[c], round(float(probs[c]), 4)) for c in order
                      if probs[c] > 0][:MAX_CATEGORIES]
        ids = [d for d, k in zip(self.doc_ids, keep, strict=True) if k]
        labels = [c for c, k in zip(self.categories, keep, strict=True) if k]
        top = np.argsort(-sims[0], kind="stable")[:5]
        neighbours = [(ids[j], labels[j], round(float(sims[0, j]), 4)) for j in top]
        return Ranking(categories, neighbours, params, used, loss)


# -- building and caching ------------------------------------------------------------------

_MODELS: dict[str, CategoryModel] = {}
_BUILD = threading.Lock()


def category_model(index: Any) -> CategoryModel | None:
    """The model of the index's current catalog generation (built once, then kept; document
    embeddings are also kept on disk next to the catalog, keyed by their text)."""
    catalog = getattr(index, "catalog", None)
    embedder = getattr(index, "embedder", None)
    if catalog is None or embedder is None:
        return None
    key = f"{getattr(catalog, 'path', id(catalog))}|{getattr(embedder, 'name', '')}"
    generation = catalog.generation
    model = _MODELS.get(key)
    if model is not None and model.generation == generation and model.embedder is embedder:
        return model
    with _BUILD:
        model = _MODELS.get(key)
        if model is None or model.generation != generation or model.embedder is not embedder:
            model = _build(catalog, embedder, generation)
            if model is None:
                _MODELS.pop(key, None)
                return None
            _MODELS[key] = model
    return model


def _build(catalog: Any, embedder: Any, generation: int) -> CategoryModel | None:
    docs = [d for d in catalog.documents().values()
            if d.kind == "postmortem" and str(d.metadata.get("root_cause_category") or "").strip()]
    if len(docs) < 2:
        return None
    docs.sort(key=lambda d: d.doc_id)
    chunks = catalog.get_chunks([c for d in docs for c in d.chunk_ids])
    openings: list[str] = []
    chunk_texts: list[str] = []
    starts: list[int] = []
    for doc in docs:
        own = [chunks[c] for c in doc.chunk_ids if c in chunks]
        services = [str(s) for s in doc.metadata.get("services") or []]
        body = opening((str(c.metadata.get("section") or ""), c.text) for c in own)
        openings.append(document_text(doc.title, services, body))
        starts.append(len(chunk_texts))
        chunk_texts += [c.embed_text for c in own] or [openings[-1]]
    vectors = _embed(catalog, embedder, openings + chunk_texts)
    return CategoryModel(
        generation=generation, embedder=embedder, doc_ids=[d.doc_id for d in docs],
        categories=[str(d.metadata["root_cause_category"]).strip() for d in docs],
        opening_vectors=vectors[: len(openings)], chunk_vectors=vectors[len(openings):],
        chunk_starts=np.array(starts, dtype=np.int64))


def _embed(catalog: Any, embedder: Any, texts: list[str]) -> np.ndarray:
    """Embeddings of ``texts``, reusing those kept on disk for the same text and embedder."""
    path = _cache_path(catalog)
    keys = [hashlib.sha256(t.encode("utf-8", "surrogatepass")).hexdigest()[:24] for t in texts]
    known: dict[str, np.ndarray] = {}
    if path is not None and path.exists():
        try:
            with np.load(path) as saved:
                known = dict(zip(saved["keys"].tolist(), saved["vectors"], strict=True))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("category embeddings cache %s unreadable (%s); rebuilding", path, exc)
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if missing:
        fresh = embedder.embed_documents([t for _, t in missing])
        known.update({k: v for (k, _), v in zip(missing, fresh, strict=True)})
    vectors = np.vstack([known[k] for k in keys]).astype(np.float32)
    if path is not None and missing:
        try:
            tmp = path.with_name(path.name + ".tmp.npz")
            np.savez(tmp, keys=np.array(keys), vectors=vectors)
            tmp.replace(path)
        except OSError as exc:  # a read-only data folder: keep the model in memory only
            log.warning("could not save category embeddings to %s: %s", path, exc)
    return vectors


def _cache_path(catalog: Any) -> Path | None:
    path = getattr(catalog, "path", None)
    if not isinstance(path, Path):
        return None
    return path.with_name(f"{path.stem}.categories.npz")


def rank_categories(snap: IncidentSnapshot, retriever: Any, *, exclude: Iterable[str] = ()
                    ) -> Ranking | None:
    """The likely root-cause categories of an incident, or None when the knowledge base has
    fewer than two labelled postmortems (or no index)."""
    index = getattr(retriever, "index", None)
    model = category_model(index) if index is not None else None
    if model is None:
        return None
    return model.rank(incident_text(snap), exclude=exclude)
