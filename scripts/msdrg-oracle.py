#!/usr/bin/env python3
"""Group claims with msdrg 1.2.0 (PyPI, MIT): the second opinion of the MS-DRG differential test.

Reads Custodian claims as NDJSON on stdin ({"id","pdx","pdx_poa","sdx":[{"code","poa"}],
"procedures":[...],"age","sex":"M|F|U","discharge_status"}) and writes one JSON line per
claim: {"id", "initial_drg", "initial_mdc", "final_drg", "final_mdc", "return_code",
"impacts": [[code, severity or OR/NOR, drg_impact], ...] for the secondary diagnoses and
procedures, "mce": {"edit_type", "edits": {NAME: count}}}. The MCE runs with --discharge-date.

Usage: python3 scripts/msdrg-oracle.py [--discharge-date 20260415] < claims.ndjson
Needs: python3 -m pip install msdrg==1.2.0
"""

import argparse
import json
import sys

import msdrg

SEX = {"M": 0, "F": 1, "U": 2}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--discharge-date", type=int, default=20260415)
    args = parser.parse_args()
    if msdrg.__version__ != "1.2.0":
        sys.exit(f"msdrg-oracle: msdrg {msdrg.__version__} installed, 1.2.0 expected")
    out = sys.stdout
    with msdrg.MsdrgGrouper() as grouper, msdrg.MceEditor() as editor:
        for line in sys.stdin:
            if not line.strip():
                continue
            claim = json.loads(line)
            pdx = {"code": claim["pdx"]}
            if claim.get("pdx_poa"):
                pdx["poa"] = claim["pdx_poa"]
            request = {
                "version": 431,
                "age": claim.get("age", 0),
                "sex": SEX[claim.get("sex", "U")],
                "discharge_status": claim.get("discharge_status", 0),
                "pdx": pdx,
                "sdx": [{"code": d["code"], **({"poa": d["poa"]} if d.get("poa") else {})} for d in claim.get("sdx", [])],
                "procedures": [{"code": p} for p in claim.get("procedures", [])],
            }
            result = grouper.group(request)
            edited = editor.edit({**request, "discharge_date": args.discharge_date})
            out.write(json.dumps({
                "id": claim.get("id"),
                "initial_drg": result["initial_drg"],
                "initial_mdc": result["initial_mdc"],
                "final_drg": result["final_drg"],
                "final_mdc": result["final_mdc"],
                "return_code": result["return_code"],
                "impacts": sorted([[d["code"], d["severity"], d["drg_impact"]] for d in result["sdx_output"]]
                                  + [[p["code"], "OR" if p["is_or"] else "NOR", p["drg_impact"]] for p in result["proc_output"]]),
                "mce": {"edit_type": edited["edit_type"],
                        "edits": {e["name"]: e["count"] for e in edited["edits"]}},
            }) + "\n")


if __name__ == "__main__":
    main()
