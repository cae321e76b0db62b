import json
import os
from pathlib import Path

import pytest

from copilot.errors import IngestError
from ingest.documents import parse_file
from tests.conftest import write


def parse(path: Path, root: Path | None = None, kind: str | None = None, max_bytes: int = 10**6):
    return parse_file(path, root=root or path.parent, kind=kind, max_bytes=max_bytes)


def test_markdown_with_frontmatter(corpus: Path) -> None:
    [doc] = parse(corpus / "postmortems" / "pm-db.md", corpus / "postmortems")
    assert doc.doc_id == "pm-db"
    assert doc.kind == "postmortem"
    assert doc.title == "Ledger database connection exhaustion"
    assert doc.metadata["services"] == ["ledger-db"]
    assert doc.metadata["date"] == "2025-03-14"
    assert doc.metadata["root_cause_category"] == "db-connection-exhaustion"
    assert doc.metadata["severity"] == "SEV2"
    assert "## Root cause" in doc.body and "---" not in doc.body.splitlines()[0]


def test_markdown_without_frontmatter_infers_kind_title_and_alert(tmp_path: Path) -> None:
    root = tmp_path / "runbooks"
    path = write(root / "node" / "NodeDiskFull.md",
                 "# NodeDiskFull\n\n## Meaning\nDisk full.\n\n## Mitigation\nFree space.\n")
    [doc] = parse(path, root)
    assert doc.kind == "runbook"
    assert doc.title == "NodeDiskFull"
    assert doc.metadata["alerts"] == ["NodeDiskFull"]
    assert doc.metadata["services"] == ["node"]  # inferred from the folder
    assert doc.doc_id == "runbooks/node/NodeDiskFull"


def test_plain_text_and_given_kind(tmp_path: Path) -> None:
    path = write(tmp_path / "notes.txt", "Root cause was a bad config push.\n")
    [doc] = parse(path, kind="postmortem")
    assert doc.kind == "postmortem" and doc.metadata["format"] == "text"
    assert doc.title == "notes"


def test_json_and_jsonl_exports(tmp_path: Path) -> None:
    records = [
        {"id": "INC-1", "title": "DNS outage", "date": "2024-05-01", "services": ["dns"],
         "summary": "Resolution failed.", "root_cause": "A zone file typo.",
         "timeline": [{"time": "10:00", "event": "paged"}], "action_items": ["lint zones"]},
        {"id": "INC-2", "title": "Queue backlog", "body": "## Summary\nConsumers lagged."},
    ]
    export = write(tmp_path / "export.json", json.dumps({"postmortems": records}))
    docs = parse(export)
    assert [d.doc_id for d in docs] == ["INC-1", "INC-2"]
    assert docs[0].kind == "postmortem"
    assert "## Root cause\n\nA zone file typo." in docs[0].body
    assert "- 10:00 paged" in docs[0].body
    assert docs[0].source.endswith("export.json#INC-1")
    lines = write(tmp_path / "export.jsonl", "\n".join(json.dumps(r) for r in records) + "\n")
    assert [d.title for d in parse(lines)] == ["DNS outage", "Queue backlog"]


@pytest.mark.parametrize(
    ("name", "content", "reason", "words"),
    [
        ("empty.md", b"   \n\n", "empty", "empty"),
        ("binary.md", b"\x89PNG\r\n\x1a\n\x00\x00\x00", "binary", "binary"),
        ("latin1.md", "caf\xe9 is down".encode("latin-1"), "encoding", "UTF-8"),
        ("bad-yaml.md", b"---\ntitle: [unclosed\n---\nbody\n", "frontmatter", "invalid YAML"),
        ("list-yaml.md", b"---\n- a\n- b\n---\nbody\n", "frontmatter", "mapping"),
        ("unclosed.md", b"---\ntitle: x\nbody\n", "frontmatter", "never closed"),
        ("only-fm.md", b"---\ntitle: x\n---\n\n", "empty", "no content"),
        ("bad-date.md", b"---\ndate: yesterday\n---\nbody\n", "frontmatter", "is not a date"),
        ("bad.json", b"{not json", "json", "not valid JSON"),
        ("record.json", b'[{"title": "no body"}]', "json", "needs a 'title' and a body"),
        ("image.png", b"png", "unsupported", "unsupported file type"),
    ],
)
def test_bad_input_has_clear_reason(tmp_path: Path, name: str, content: bytes, reason: str,
                                    words: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(IngestError) as info:
        parse(path)
    assert info.value.reason == reason
    assert words in str(info.value) and str(path) in str(info.value)


def test_oversized_file(tmp_path: Path) -> None:
    path = write(tmp_path / "big.md", "x" * 2000)
    with pytest.raises(IngestError, match="over the 1,000-byte limit") as info:
        parse(path, max_bytes=1000)
    assert info.value.reason == "oversized"


def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path / "secret.md", "text")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads anything; a directory named like a file cannot be read
        path.chmod(0o644)
        path = tmp_path / "folder.md"
        path.mkdir()
    with pytest.raises(IngestError) as info:
        parse(path)
    assert info.value.reason == "unreadable" and "cannot read file" in str(info.value)


def test_utf8_bom_and_utf16_are_accepted(tmp_path: Path) -> None:
    a = tmp_path / "bom.md"
    a.write_bytes(b"\xef\xbb\xbf# Title\n\nBody text")
    b = tmp_path / "utf16.md"
    b.write_bytes("# Sixteen\n\nBody text".encode("utf-16"))
    assert parse(a)[0].title == "Title"
    assert parse(b)[0].title == "Sixteen"


@pytest.mark.parametrize("raw,iso", [("2015-11-29", "2015-11-29"), ("11/29/2015", "2015-11-29"),
                                     ("29/11/2015", "2015-11-29"), ("29 Nov 2015", "2015-11-29"),
                                     ("November 29, 2015", "2015-11-29")])
def test_dates_in_common_export_formats(raw: str, iso: str) -> None:
    from ingest.documents import _as_date

    assert _as_date(raw, "x.md") == iso
