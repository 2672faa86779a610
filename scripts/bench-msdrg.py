#!/usr/bin/env python3
"""Group NDJSON claims with msdrg 1.2.0 (PyPI) and print the rate, for `custodian bench coding`.

Reads the same claims `custodian coding group` reads; times only the grouping loop (the
claims are parsed and converted to msdrg's request form first). Prints one line:
  msdrg 1.2.0: N claims, R claims/s
Usage: python3 scripts/bench-msdrg.py CLAIMS.ndjson
Needs: python3 -m pip install msdrg==1.2.0
"""

import json
import sys
import time

import msdrg

SEX = {"M": 0, "F": 1, "U": 2}


def request(claim):
    pdx = {"code": claim["pdx"]}
    if claim.get("pdx_poa"):
        pdx["poa"] = claim["pdx_poa"]
    return {
        "version": 431,
        "age": claim.get("age", 0),
        "sex": SEX[claim.get("sex", "U")],
        "discharge_status": claim.get("discharge_status", 0),
        "pdx": pdx,
        "sdx": [{"code": d["code"], **({"poa": d["poa"]} if d.get("poa") else {})} for d in claim.get("sdx", [])],
        "procedures": [{"code": p} for p in claim.get("procedures", [])],
    }


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        requests = [request(json.loads(line)) for line in f if line.strip()]
    with msdrg.MsdrgGrouper() as grouper:
        started = time.perf_counter()
        for r in requests:
            grouper.group(r)
        elapsed = time.perf_counter() - started
    print(f"msdrg {msdrg.__version__}: {len(requests)} claims, {len(requests) / elapsed:.0f} claims/s")


if __name__ == "__main__":
    main()
