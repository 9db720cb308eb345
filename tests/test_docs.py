"""The README documents every manifest key and every command-line option (after simonw's
git-history): undocumented options are options nobody can find."""

import argparse
from pathlib import Path

from pipeline.cli import build_parser
from pipeline.manifest import SCHEMA

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def leaf_keys(schema: dict, prefix: str = "") -> list[str]:
    props = schema.get("properties")
    if not props:
        return [prefix]
    keys = []
    for name, sub in props.items():
        path = f"{prefix}.{name}" if prefix else name
        # Lists of objects and nullable objects are documented as one key.
        if sub.get("type") == "object" and "properties" in sub:
            keys += leaf_keys(sub, path)
        else:
            keys.append(path)
    return keys


def test_every_manifest_key_is_in_the_readme_reference() -> None:
    missing = [k for k in leaf_keys(SCHEMA) if f"`{k}`" not in README]
    assert missing == []


def test_every_command_and_option_is_in_the_readme() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name, command in sub.choices.items():
        if f"`{name}" not in README:
            missing.append(name)
        for action in command._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help" and flag not in README:
                    missing.append(f"{name} {flag}")
    for action in parser._actions:
        for flag in action.option_strings:
            if flag.startswith("--") and flag != "--help" and flag not in README:
                missing.append(flag)
    assert missing == []
