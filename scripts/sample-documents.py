#!/usr/bin/env python3
"""Writes a batch of sample registry documents for the demo: one-page PDFs laid out like an
index des immeubles (lots, dates, parties), an acte or a plan cadastral, in
<dir>/<document_source>/<document_number>.pdf (the directory fetcher's layout), and prints one
line per document: source<TAB>number<TAB>circonscription<TAB>cadastre.

Usage: sample-documents.py <dir> <count>
"""
import os
import random
import sys

CIRCONSCRIPTIONS = ["Montréal", "Québec", "Laval", "Sherbrooke", "Gatineau"]
NAMES = ["Tremblay", "Gagnon", "Roy", "Côté", "Bouchard", "Gauthier", "Morin", "Lavoie", "Fortin", "Gagné"]
FIRST = ["Jean", "Marie", "Pierre", "Louise", "Michel", "Sylvie", "André", "Nathalie"]
NATURES = ["Vente", "Hypothèque", "Servitude", "Donation", "Quittance"]


def pdf_bytes(lines, font_size=16):
    """A minimal valid one-page PDF (US letter) drawing `lines` in Helvetica."""
    def esc(s):
        return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    y = 740
    ops = ["BT", f"/F1 {font_size} Tf", f"{int(font_size * 1.6)} TL", f"50 {y} Td"]
    for line in lines:
        ops.append(f"({esc(line)}) Tj T*")
    ops.append("ET")
    content = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def person(rng):
    return f"{rng.choice(NAMES)} {rng.choice(FIRST)}"


def date(rng):
    return f"{rng.randint(1995, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def document(source, number, circ, rng):
    if source == "index":
        lines = ["INDEX DES IMMEUBLES", f"Circonscription foncière : {circ}", f"Cadastre du Québec - Lot {number}", ""]
        for _ in range(8):
            lines.append(f"{date(rng)}  {rng.randint(1000000, 29999999)}  {rng.choice(NATURES)}  {person(rng)}")
        return lines
    if source == "acte":
        return [
            "ACTE", f"Inscription {number}", f"Circonscription foncière : {circ}", "",
            f"{rng.choice(NATURES)} entre {person(rng)} et {person(rng)}",
            f"Lot {rng.randint(1000000, 6999999)} du cadastre du Québec", f"Date : {date(rng)}",
        ]
    return ["PLAN CADASTRAL", f"Lot {number}", f"Circonscription foncière : {circ}", f"Date : {date(rng)}"]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    root, count = sys.argv[1], int(sys.argv[2])
    rng = random.Random(20261128)
    sources = ["index", "index", "acte", "plan_cadastraux"]
    for i in range(count):
        source = sources[i % len(sources)]
        number = f"{rng.randint(1000000, 6999999)}" if source != "acte" else f"{rng.randint(20000000, 29999999)}"
        circ = rng.choice(CIRCONSCRIPTIONS)
        os.makedirs(os.path.join(root, source), exist_ok=True)
        with open(os.path.join(root, source, f"{number}.pdf"), "wb") as f:
            f.write(pdf_bytes(document(source, number, circ, rng)))
        print(f"{source}\t{number}\t{circ}\tCadastre du Québec")


if __name__ == "__main__":
    main()
