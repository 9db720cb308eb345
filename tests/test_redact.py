"""Redaction (pipeline/redact.py): what is masked, how, and what the record says about it."""

from __future__ import annotations

import random

import numpy as np
import pytest

from pipeline.convert import MODE_2018, convert_bytes, text_to_images, text_to_images_2018
from pipeline.manifest import default_processing
from pipeline.redact import MASK, TRIGGERS, _scanner, redact, redaction_summary
from pipeline.sandbox.secrets import planted_tree


def _shape(data: bytes) -> list[int]:
    return [len(line) for line in data.decode("utf-8", "replace").split("\n")]


@pytest.mark.parametrize("seed", range(12))
def test_every_planted_kind_is_masked_once_and_lines_keep_their_length(seed: int) -> None:
    tree, planted = planted_tree(random.Random(seed))
    assert len({p.kind for p in planted}) >= 25
    for path, data in tree.items():
        out, found = redact(path, data, "secrets")
        text = out.decode()
        assert _shape(out) == _shape(data), path
        mine = [p for p in planted if p.path == path]
        assert [v for p in mine for v in p.values if v in text] == [], path
        assert sorted(r.line for r in found) == sorted(p.line for p in mine), path
        # only masks changed; every masked character is reported
        changed = sum(a != b for a, b in zip(text, data.decode(), strict=True))
        assert changed <= sum(r.chars for r in found)


def test_a_private_key_is_masked_between_its_markers_and_a_mention_is_not() -> None:
    key = "\n".join(["-----BEGIN EC PRIVATE KEY-----", "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5",
                     "oAoGCCqGSM49AwEHoUQDQgAE", "-----END EC PRIVATE KEY-----", ""]).encode()
    out, found = redact("keys/ec.pem", key, "secrets")
    lines = out.decode().split("\n")
    assert lines[0] == "-----BEGIN EC PRIVATE KEY-----" and lines[3].startswith("-----END")
    assert set(lines[1]) == set(lines[2]) == {MASK}
    assert [(r.line, r.end_line, r.rule) for r in found] == [(2, 3, "PrivateKeyDetector")]
    parser = b'if line.startswith("-----BEGIN RSA PRIVATE KEY-----"):\n    key = read(fh)\n'
    assert redact("pem.py", parser, "secrets") == (parser, ())


def test_policies_none_and_emails() -> None:
    data = b'AUTHOR = "Ana Lopez <ana.lopez@example.org>"\npassword = "Quasar77!xYz"\n'
    assert redact("setup.py", data, "none") == (data, ())
    out, found = redact("setup.py", data, "secrets")
    assert b"ana.lopez@example.org" in out and b"Quasar77" not in out
    out, found = redact("setup.py", data, "secrets+emails")
    assert b"@" not in out and b"Quasar77" not in out
    assert sorted(r.rule for r in found) == ["EmailAddress", "KeywordDetector"]
    assert found[0].to_dict("x/setup.py") == {
        "path": "x/setup.py", "line": 1, "column": 22, "end_line": 1, "end_column": 42,
        "chars": 21, "rule": "EmailAddress"}


def test_undecodable_bytes_tabs_and_crlf_are_never_masked() -> None:
    data = b'\tapi_key = "Zq8\xffR2mT7wLk4Pn9xVb3Hc6Jd"\r\nok = 1\r\n'
    out, found = redact("a.py", data, "secrets")
    assert out.startswith(b'\tapi_key = "***\xff') and out.endswith(b'"\r\nok = 1\r\n')
    assert len(out) == len(data) and found[0].chars == 24


def test_ordinary_code_is_left_alone() -> None:
    code = (b"import hashlib\n\n\ndef check(password: str, salt: bytes) -> bool:\n"
            b"    digest = hashlib.sha256(salt + password.encode()).hexdigest()\n"
            b"    token = next(tokens)\n    return digest == stored[\"digest\"]\n")
    assert redact("auth.py", code, "secrets") == (code, ())


def test_conversion_masks_before_the_transform_in_both_modes() -> None:
    gh = "ghp_" + "".join(random.Random(3).choice("abcdefXYZ0123456789") for _ in range(36))
    data = f'TOKEN = "{gh}"\nprint(TOKEN)\n'.encode()
    masked = data.replace(gh.encode(), MASK.encode() * len(gh))
    on = convert_bytes("cfg.py", data, default_processing())
    assert np.array_equal(on.images, text_to_images(masked))
    assert [r.rule for r in on.redactions] == ["GitHubTokenDetector"]
    off = convert_bytes("cfg.py", data, default_processing(redact="none"))
    assert np.array_equal(off.images, text_to_images(data)) and off.redactions == ()
    exact = convert_bytes("cfg.py", data, default_processing(mode=MODE_2018, redact="none"))
    assert [a.tolist() for a in exact.image_list()] == [
        a.tolist() for a in text_to_images_2018(data)]
    redacted = convert_bytes("cfg.py", data, default_processing(mode=MODE_2018))
    assert [a.tolist() for a in redacted.image_list()] == [
        a.tolist() for a in text_to_images_2018(masked)]
    note = redaction_summary(default_processing(mode=MODE_2018), 1)
    assert "differ from 2018" in note["note"] and note["count"] == 1
    assert "note" not in redaction_summary(default_processing(mode=MODE_2018, redact="none"), 0)


def test_every_enabled_plugin_has_a_trigger() -> None:
    """A detect-secrets upgrade that adds a plugin must add its pre-filter trigger too."""
    scanner = _scanner()
    derived = {"KeywordDetector", "Base64HighEntropyString", "HexHighEntropyString"}
    assert set(scanner.plugins) - derived == set(TRIGGERS)
    assert set(scanner.plugins) == set(scanner.triggers)
