#!/usr/bin/env python3
"""Second opinion for FHIRPath: evaluates expressions with fhirpathpy (PyPI) and prints
the results as JSON, for crates/fhirpath/tests/differential.rs to compare with ours.

Input (stdin): {"cases": [{"resource": {...}, "expressions": ["...", ...]}, ...]}
Output (stdout): {"results": [[<result or null when fhirpathpy fails>, ...], ...]}
A result is a list of JSON values; FHIR nodes stay JSON, other values become strings.
"""

import json
import sys


def plain(value):
    if isinstance(value, (dict, list, str, bool, int, float)) or value is None:
        return value
    return str(value)


def main():
    from fhirpathpy import compile as fp_compile
    from fhirpathpy.models import models

    model = models["r4"]
    request = json.load(sys.stdin)
    compiled = {}
    results = []
    for case in request["cases"]:
        answers = []
        for expression in case["expressions"]:
            try:
                if expression not in compiled:
                    compiled[expression] = fp_compile(expression, model)
                answers.append([plain(v) for v in compiled[expression](case["resource"])])
            except Exception:
                answers.append(None)
        results.append(answers)
    json.dump({"results": results}, sys.stdout, default=str)


if __name__ == "__main__":
    sys.exit(main())
