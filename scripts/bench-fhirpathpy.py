#!/usr/bin/env python3
"""Second opinion for the FHIRPath benchmark: evaluates the same R4 search-parameter
expressions on the same Synthea resources with fhirpathpy (PyPI), and prints
resources per second on one core.

Usage: python3 scripts/bench-fhirpathpy.py [--testdata DIR] [--bundles N] [--seconds S]
Needs: pip install fhirpathpy
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def load_resources(testdata: Path, bundles: int):
    folder = testdata / "synthea" / "synthea-100"
    files = sorted(p for p in folder.glob("*.json"))[:bundles]
    resources = []
    for path in files:
        bundle = json.loads(path.read_text())
        for entry in bundle.get("entry", []):
            resource = entry.get("resource")
            if isinstance(resource, dict):
                resources.append(resource)
    return resources


def expressions_by_type():
    data = json.loads((ROOT / "data" / "fhir-r4" / "search-parameters.json").read_text())
    by_type = {}
    for param in data["searchParameters"]:
        expression = param.get("expression")
        if not expression:
            continue
        for base in param["base"]:
            by_type.setdefault(base, []).append(expression)
    return by_type


def main():
    parser = argparse.ArgumentParser()
    default_testdata = os.environ.get("CUSTODIAN_TESTDATA", str(ROOT.parent / "shared" / "testdata"))
    parser.add_argument("--testdata", default=default_testdata)
    parser.add_argument("--bundles", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    from fhirpathpy import compile as fp_compile
    from fhirpathpy.models import models

    model = models["r4"]
    resources = load_resources(Path(args.testdata), args.bundles)
    by_type = expressions_by_type()
    common = by_type.get("Resource", []) + by_type.get("DomainResource", [])
    compiled = {}
    failures = 0
    for resource_type in {r["resourceType"] for r in resources}:
        functions = []
        for expression in by_type.get(resource_type, []) + common:
            try:
                functions.append(fp_compile(expression, model))
            except Exception:
                failures += 1
        compiled[resource_type] = functions

    rates = []
    errors = 0
    for _ in range(args.runs):
        started = time.perf_counter()
        for resource in resources:
            for function in compiled[resource["resourceType"]]:
                try:
                    function(resource)
                except Exception:
                    errors += 1
        rates.append(len(resources) / (time.perf_counter() - started))
    print(
        f"fhirpathpy: {len(resources)} resources, median {statistics.median(rates):.0f} resources/s "
        f"(runs: {', '.join(f'{r:.0f}' for r in rates)}; {failures} expressions failed to compile, "
        f"{errors} evaluation errors)"
    )


if __name__ == "__main__":
    sys.exit(main())
