from pathlib import Path

from ingest.chunking import chunk_document, split_sections
from ingest.documents import parse_file
from ingest.tokens import count_tokens


def test_sections_follow_headings_not_code_fences() -> None:
    body = "# T\nintro\n## A\none\n```\n# comment in code\n```\n### A1\ntwo\n## B\nthree\n"
    sections = split_sections(body)
    assert [s.path for s in sections] == [["T"], ["T", "A"], ["T", "A", "A1"], ["T", "B"]]
    assert "# comment in code" in sections[1].text


def test_chunks_carry_metadata_and_section_paths(corpus: Path) -> None:
    [doc] = parse_file(corpus / "runbooks" / "rb-db.md", root=corpus / "runbooks", kind=None,
                       max_bytes=10**6)
    chunks = chunk_document(doc, budget=200, overlap=20, min_tokens=0)
    sections = [c.metadata["section"] for c in chunks]
    assert sections == ["Meaning", "Impact", "Diagnosis", "Mitigation"]
    for c in chunks:
        assert c.doc_id == "rb-db" and c.id.startswith("rb-db::")
        assert c.metadata["kind"] == "runbook"
        assert c.metadata["services"] == ["ledger-db"]
        assert c.metadata["alerts"] == ["LedgerDBConnectionsSaturated"]
        assert c.metadata["source"].endswith("rb-db.md")
        assert c.embed_text.startswith("Database connections saturated — ")
        assert "Alerts: LedgerDBConnectionsSaturated" in c.embed_text


def test_small_sections_merge_and_long_ones_split_with_overlap(tmp_path: Path) -> None:
    long = " ".join(f"sentence{n} about disk pressure." for n in range(300))
    path = tmp_path / "doc.md"
    path.write_text(f"# Doc\n\n## Tiny\nok\n\n## Small\nshort words here\n\n## Long\n{long}\n")
    [doc] = parse_file(path, root=tmp_path, kind="document", max_bytes=10**6)
    chunks = chunk_document(doc, budget=100, overlap=20, min_tokens=10)
    assert chunks[0].metadata["section"] == "Tiny" and "ok" in chunks[0].text
    assert "short words here" in chunks[0].text  # the tiny section was merged with the next
    assert all(count_tokens(c.text) <= 100 + 12 for c in chunks)
    assert len(chunks) >= 8
    # consecutive windows share text (the overlap)
    a, b = chunks[2].text.split(), chunks[3].text.split()
    assert set(a[-5:]) & set(b[:15])


def test_chunk_ids_are_content_hashes(corpus: Path) -> None:
    path = corpus / "runbooks" / "rb-db.md"
    doc = parse_file(path, root=path.parent, kind=None, max_bytes=10**6)[0]
    first = [c.id for c in chunk_document(doc, budget=200, overlap=20, min_tokens=0)]
    again = [c.id for c in chunk_document(doc, budget=200, overlap=20, min_tokens=0)]
    assert first == again
    doc.body = doc.body.replace("restart it", "restart it gracefully")
    changed = [c.id for c in chunk_document(doc, budget=200, overlap=20, min_tokens=0)]
    assert changed[:3] == first[:3] and changed[3] != first[3]
