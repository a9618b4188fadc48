"""MkDocs hooks: pages whose text comes from fleetrel itself.

- `<!-- plan-schema -->` in a page becomes one table per object of the plan's JSON Schema
  (what `fleetrel schema` prints): field, type, default, rules, description.
- `<!-- readme -->` becomes the README, its links to docs/ pages made relative to the site,
  so the landing page is written once.

tests/test_docs.py checks that the tables name every property of the schema.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
ORDER = ["ReleasePlan", "Target", "TargetMatrix", "TargetSpec", "Limits", "Abort", "Defaults",
         "VersionEntry", "SelectorEntry", "Select", "Artifact", "S3Location"]


def plan_schema() -> dict[str, Any]:
    from fleetrel.plan import ReleasePlan

    return ReleasePlan.model_json_schema()


def _anchor(name: str) -> str:
    return name.lower()


def type_of(prop: dict[str, Any]) -> str:
    """A JSON Schema type, short: `integer`, `[Limits](#limits)`, `list of string`, `A | B`."""
    if "$ref" in prop:
        name = prop["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{_anchor(name)})"
    for key in ("anyOf", "oneOf"):
        if key in prop:
            kinds = [type_of(p) for p in prop[key] if p.get("type") != "null"]
            return " or ".join(dict.fromkeys(kinds)) + (" or null" if any(p.get("type") == "null"
                                                                         for p in prop[key]) else "")
    if "enum" in prop:
        return " or ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    kind = prop.get("type", "any")
    if kind == "array":
        return f"list of {type_of(prop.get('items', {}))}"
    if kind == "object" and "additionalProperties" in prop and isinstance(prop["additionalProperties"], dict):
        return f"map of {type_of(prop['additionalProperties'])}"
    return kind


RULES = {"minLength": "length ≥ {}", "maxLength": "length ≤ {}", "pattern": "`{}`", "minimum": "≥ {}",
         "maximum": "≤ {}", "exclusiveMinimum": "> {}", "exclusiveMaximum": "< {}", "minItems": "≥ {} items",
         "maxItems": "≤ {} items"}


def rules_of(prop: dict[str, Any]) -> str:
    found = [text.format(prop[key]) for key, text in RULES.items() if key in prop]
    for key in ("anyOf", "oneOf"):
        for part in prop.get(key, []):
            inner = rules_of(part)
            if inner:
                found.append(inner)
    if prop.get("type") == "array" and isinstance(prop.get("items"), dict):
        inner = rules_of(prop["items"])
        if inner:
            found.append(f"each {inner}")
    return ", ".join(dict.fromkeys(found))


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def schema_tables(schema: dict[str, Any]) -> str:
    """Markdown: a section per object of the schema, a row per property."""
    objects = {"ReleasePlan": schema, **schema.get("$defs", {})}
    names = [n for n in ORDER if n in objects] + sorted(set(objects) - set(ORDER))
    out: list[str] = []
    for name in names:
        obj = objects[name]
        if "properties" not in obj:
            continue
        out += [f"### {name} {{#{_anchor(name)}}}", ""]
        if obj.get("description"):
            out += [_cell(obj["description"].split("\n\n")[0]), ""]
        required = set(obj.get("required", []))
        out += ["| field | type | default | rules | description |", "|---|---|---|---|---|"]
        for field, prop in obj["properties"].items():
            default = "required" if field in required else (
                f"`{json.dumps(prop['default'])}`" if "default" in prop else "")
            out.append(f"| `{field}` | {_cell(type_of(prop))} | {default} | {_cell(rules_of(prop))} | "
                       f"{_cell(prop.get('description', ''))} |")
        out.append("")
    return "\n".join(out)


def readme_for_the_site() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.sub(r"\]\(docs/", "](", text)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if "<!-- plan-schema -->" in markdown:
        markdown = markdown.replace("<!-- plan-schema -->", schema_tables(plan_schema()))
    if "<!-- readme -->" in markdown:
        markdown = markdown.replace("<!-- readme -->", readme_for_the_site())
    return markdown
