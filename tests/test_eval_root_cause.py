"""The root-cause evaluation on a tiny written corpus: leave-one-out holds, the baselines and
metrics are computed as documented, bad case files get a clear error. Then the category ranking
(copilot/tasks/categorize.py) on small synthetic data: symptom openings, the prior fallback,
exact leave-one-out, the per-generation cache and the eval's leak check."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from copilot.errors import EvalError
from copilot.tasks import categorize
from copilot.tasks.categorize import (
    CategoryModel,
    Params,
    _Labels,
    at_depth,
    category_model,
    opening,
    posterior,
)
from evals.root_cause import build_index, cut, load_cases, macro_f1, run_root_cause_eval
from tests.conftest import write

DOCS = {
    "pm-a": ("internal/config", "Config push broke routing", (
        "A bad config push to the router fleet dropped requests. Rolled back the config.")),
    "pm-b": ("internal/config", "Config change broke auth", (
        "A config change to the auth service rejected tokens. Rolled back the config change.")),
    "pm-c": ("external/power", "Power loss in a zone", (
        "Utility power failed in one zone and generators did not start. Servers went down.")),
    "pm-d": ("external/power", "Generator failure", (
        "A generator failed during a power event; racks lost power.")),
}


def _corpus(root: Path) -> Path:
    for doc, (category, title, body) in DOCS.items():
        write(root / f"{doc}.md", f"---\nid: {doc}\ntitle: {title}\ndate: 3/1/2020\n"
                                  f"root_cause_category: {category}\n---\n\n# {title}\n\n{body}\n")
    return root


def _cases(path: Path) -> Path:
    lines = [{"id": f"rc-{doc}", "postmortem_id": doc,
              "incident": {"title": title, "services": ["svc"], "description": body},
              "gold": {"category": category}} for doc, (category, title, body) in DOCS.items()]
    return write(path, "\n".join(json.dumps(x) for x in lines))


def test_leave_one_out_and_baselines(settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    retriever, report = build_index(settings, _corpus(tmp_path / "kb"))
    assert report.documents == 4 and not report.errors  # M/D/YYYY dates are accepted
    cases = load_cases(_cases(tmp_path / "cases.jsonl"))
    result = run_root_cause_eval(cases, retriever, k=3)
    full = result["results"]["full"]
    # each case's own postmortem is out, so its one same-category neighbour must carry it
    assert full["lexical vote"]["acc@3"] == 1.0
    assert 0.0 <= full["copilot"]["acc@1"] <= 1.0 and full["copilot"]["acc@3"] == 1.0
    # majority of the *other* cases: the own label is always the minority (1 vs 2)
    assert full["majority"]["acc@1"] == 0.0
    assert result["results"]["depth 2"]["copilot"]["acc@1"] == full["copilot"]["acc@1"]
    assert len(result["predictions"]) == 4
    # the copilot's categories come from the calibrated ranking of the other postmortems
    assert all(row["calibration"]["view"] in ("opening", "full", "mean")
               for row in result["predictions"])


def test_metrics_and_bad_input(tmp_path: Path) -> None:
    assert cut("a/b/c", 2) == "a/b" and cut("a/b/c", None) == "a/b/c"
    assert macro_f1([("x", "x"), ("y", "y")]) == 1.0
    assert macro_f1([("x", "y"), ("y", "x")]) == 0.0
    assert macro_f1([("x", "x"), ("x", "y")]) == pytest.approx((2 / 3 + 0) / 2)
    with pytest.raises(EvalError, match="cases.jsonl:2: not a root-cause case"):
        load_cases(write(tmp_path / "cases.jsonl", '{"id": "1", "postmortem_id": "p", '
                         '"incident": {}, "gold": {"category": "c"}}\n{"id": 2}\n'))
    with pytest.raises(EvalError, match="knowledge base folder not found"):
        from copilot.config import Settings

        build_index(Settings(data_dir=tmp_path / "d", embedding_model="hash"), tmp_path / "nope")


# -- the category ranking (copilot/tasks/categorize.py) on small synthetic data ----------------


class _Fixed:
    """An embedder for hand-made vectors: a query text is looked up, not embedded."""

    name = "fixed"

    def __init__(self, queries: dict[str, np.ndarray]) -> None:
        self.queries = queries

    def embed_query(self, text: str) -> np.ndarray:
        return self.queries[text]


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _clusters(labels: list[str], *, signal: bool, seed: int = 0) -> CategoryModel:
    """Documents whose vectors sit around one direction per label (``signal``), or are noise."""
    rng = np.random.default_rng(seed)
    names = sorted(set(labels))
    centres = np.eye(16)[: len(names)] * 3.0
    vecs = np.array([(centres[names.index(c)] if signal else 0) + rng.normal(0, 1, 16)
                     for c in labels])
    opening_vectors = _unit(vecs)
    chunk_vectors = _unit(np.repeat(vecs, 2, axis=0) + rng.normal(0, 0.3, (2 * len(labels), 16)))
    queries = {c: _unit(centres[names.index(c)] + rng.normal(0, 0.5, 16)) for c in names}
    return CategoryModel(generation=1, embedder=_Fixed(queries),
                         doc_ids=[f"d{i:02d}" for i in range(len(labels))], categories=labels,
                         opening_vectors=opening_vectors, chunk_vectors=chunk_vectors,
                         chunk_starts=np.arange(0, 2 * len(labels), 2))


LABELS = (["int/bugs/config"] * 8 + ["int/bugs/code"] * 5 + ["ext/hw/power"] * 4
          + ["ext/hw/network"] * 3 + ["unknown"] * 4)


def test_opening_keeps_the_symptoms_before_the_first_stated_cause() -> None:
    flat = [("", ("Users saw errors on checkout. Latency rose to 9 s. The root cause was a bad "
                  "config push. It was rolled back."))]
    assert opening(flat) == "Users saw errors on checkout. Latency rose to 9 s."
    # a long section comes in several chunks: once its cause is stated, its later chunks are out
    windows = [("", "Users saw errors. The root cause was a bad push."), ("", "It was rolled back."),
               ("Impact", "2% of orders failed.")]
    assert opening(windows) == "Users saw errors. 2% of orders failed."
    sectioned = [("Summary", "Checkout failed for 20 minutes. This was caused by a deploy."),
                 ("Impact", "2% of orders failed."), ("Root cause", "A config push."),
                 ("Resolution", "Rolled back."), ("Timeline", "14:00 the alert fired.")]
    assert opening(sectioned) == ("Checkout failed for 20 minutes. 2% of orders failed. "
                                  "14:00 the alert fired.")
    assert opening([("", "Due to a fiber cut the region went dark. Traffic moved.")]) == \
        "Due to a fiber cut the region went dark."  # nothing before the cause: first sentence
    assert len(opening([("", "word " * 500)], limit=50).split()) == 50


def test_at_depth_sums_the_children() -> None:
    cats = [("a/b/c", 0.4), ("x", 0.35), ("a/b/d", 0.15), ("a/e", 0.1)]
    assert at_depth(cats, 2) == [("a/b", 0.55), ("x", 0.35), ("a/e", 0.1)]
    assert at_depth(cats, 1) == [("a", 0.65), ("x", 0.35)]
    assert at_depth(cats, None) == cats


def test_without_votes_the_posterior_is_the_prior_flat_and_tree() -> None:
    labels = _Labels.of(sorted(set(LABELS)))
    counts = np.array([sum(1 for x in LABELS if x == c) for c in labels.classes], float)
    prior = counts / counts.sum()
    for structure in ("flat", "tree"):
        p = posterior(np.zeros((1, len(counts))), counts, Params(prior=2.0, structure=structure),
                      labels)[0]
        assert np.allclose(p, prior)
    votes = np.zeros((1, len(counts)))
    votes[0, labels.classes.index("ext/hw/network")] = 5.0
    for structure in ("flat", "tree"):
        p = posterior(votes, counts, Params(prior=1.0, structure=structure), labels)[0]
        assert abs(p.sum() - 1) < 1e-9 and labels.classes[int(p.argmax())] == "ext/hw/network"
    # the tree backs a vote for one child off to its siblings more than the flat prior does
    tree = posterior(votes, counts, Params(prior=4.0, structure="tree"), labels)[0]
    flat = posterior(votes, counts, Params(prior=4.0, structure="flat"), labels)[0]
    power = labels.classes.index("ext/hw/power")
    assert tree[power] > flat[power]


def test_similar_documents_decide_and_the_calibration_trusts_them() -> None:
    model = _clusters(LABELS, signal=True)
    params, loss = model.calibrate()
    assert not math.isinf(params.tau) and loss < 1.0
    for label in set(LABELS):
        ranking = model.rank(label)
        assert ranking is not None and ranking.categories[0][0] == label
        assert abs(sum(p for _, p in ranking.categories) - 1) < 1e-3
        assert ranking.neighbours[0][1] == label and ranking.used == frozenset(model.doc_ids)


def test_without_signal_the_ranking_falls_back_to_the_base_rates() -> None:
    model = _clusters(LABELS, signal=False, seed=3)
    for label in set(LABELS):
        ranking = model.rank(label)
        assert ranking is not None and ranking.categories[0][0] == "int/bugs/config"
        assert ranking.at_depth(2)[0][0] == "int/bugs"


def test_leaving_a_document_out_is_exact() -> None:
    """Excluding a document gives the ranking of a model that never had it: votes, class
    counts, prior and calibration alike."""
    model = _clusters(LABELS, signal=True, seed=5)
    for gone in (0, 13, 20):
        keep = [i for i in range(len(LABELS)) if i != gone]
        rows = np.array([r for i in keep for r in (2 * i, 2 * i + 1)])
        without = CategoryModel(
            generation=1, embedder=model.embedder, doc_ids=[model.doc_ids[i] for i in keep],
            categories=[LABELS[i] for i in keep], opening_vectors=model.opening_vectors[keep],
            chunk_vectors=model.chunk_vectors[rows], chunk_starts=np.arange(0, len(rows), 2))
        doc = model.doc_ids[gone]
        assert model.calibrate(frozenset({doc})) == without.calibrate()
        for label in set(LABELS):
            left_out = model.rank(label, exclude=[doc])
            assert left_out is not None and doc not in left_out.used
            assert left_out.categories == without.rank(label).categories  # type: ignore[union-attr]


def test_a_large_knowledge_base_calibrates_on_a_spread_of_probes(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(categorize, "CALIBRATION_PROBES", 9)
    model = _clusters(LABELS, signal=True)
    assert len(model.probes()) == 9
    params, loss = model.calibrate(frozenset({model.doc_ids[int(model.probes()[2])]}))
    assert not math.isinf(params.tau) and np.isfinite(loss)


class _Counting:
    """Wraps an embedder and counts the texts it embeds."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.texts = inner, 0
        self.name, self.dim = inner.name, inner.dim

    def embed_documents(self, texts):  # type: ignore[no-untyped-def]
        self.texts += len(texts)
        return self.inner.embed_documents(texts)

    def embed_query(self, text):  # type: ignore[no-untyped-def]
        return self.inner.embed_query(text)


def test_the_model_is_kept_per_generation_and_its_embeddings_on_disk(settings, tmp_path: Path
                                                                      ) -> None:  # type: ignore[no-untyped-def]
    from retrieval.embedders import HashEmbedder

    kb = _corpus(tmp_path / "kb")
    retriever, _ = build_index(settings, kb)
    counting = _Counting(HashEmbedder())
    retriever.index.embedder = counting
    categorize._MODELS.clear()
    model = category_model(retriever.index)
    assert model is not None and sorted(model.doc_ids) == sorted(DOCS)
    first = counting.texts
    assert first >= 2 * len(DOCS) and category_model(retriever.index) is model
    categorize._MODELS.clear()  # a new process: the vectors come back from disk
    again = category_model(retriever.index)
    assert again is not model and counting.texts == first
    assert np.allclose(again.opening_vectors, model.opening_vectors)  # type: ignore[union-attr]
    write(kb / "pm-e.md", "---\nid: pm-e\ntitle: Fiber cut\ndate: 3/1/2020\nroot_cause_category: "
                          "external/network\n---\n\n# Fiber cut\n\nA backhoe cut a fiber.\n")
    from ingest.pipeline import run_ingest

    run_ingest([kb], index=retriever.index, settings=settings, kind="postmortem")
    grown = category_model(retriever.index)
    assert grown is not None and "pm-e" in grown.doc_ids
    assert 0 < counting.texts - first <= 3  # only the new postmortem's texts


def test_the_eval_raises_when_the_own_postmortem_reaches_the_ranking(settings, tmp_path: Path,
                                                                      monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from copilot.tasks import root_causes

    retriever, _ = build_index(settings, _corpus(tmp_path / "kb"))
    cases = load_cases(_cases(tmp_path / "cases.jsonl"))

    def leaky(snap, retriever, *, exclude=()):  # type: ignore[no-untyped-def]
        return categorize.Ranking([("internal/config", 1.0)], [], Params(),
                                  frozenset(DOCS))  # every postmortem, the excluded one too

    monkeypatch.setattr(root_causes, "rank_categories", leaky)
    with pytest.raises(EvalError, match="reached the category ranking"):
        run_root_cause_eval(cases, retriever, k=3)
