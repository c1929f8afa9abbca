"""The batch record as a PDF, drawn without a browser and without network.

fpdf2 (pure Python) writes the pages and places the record's SVG charts as vector
drawings (`FPDF.image` of an SVG), so the PDF shows the same charts as the page. Text uses
DejaVu Sans where the system has it (every character of names and reasons), else the PDF
core font with the characters Latin-1 lacks replaced by "?", never dropped silently.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from pathlib import Path
from typing import Any

from edge.web.batch_record import chart_svgs

FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))


class _Writer:
    def __init__(self) -> None:
        from fpdf import FPDF  # imported when a PDF is asked for: the line never needs it

        writer = self

        class _Pages(FPDF):
            def footer(self) -> None:  # every page names its batch and its place in the record
                self.set_y(-10)
                writer.font(7.5)
                self.cell(
                    0,
                    5,
                    writer.t(f"{writer.footer_text}   page {self.page_no()}/{{nb}}"),
                    align="R",
                )

        self.footer_text = ""
        self.pdf = _Pages(orientation="P", unit="mm", format="A4")
        self.pdf.set_auto_page_break(auto=True, margin=14)
        self.pdf.set_margins(14, 14, 14)
        self.family = "helvetica"
        self.unicode = False
        for d in FONT_DIRS:
            regular, bold = d / "DejaVuSans.ttf", d / "DejaVuSans-Bold.ttf"
            if regular.is_file() and bold.is_file():
                self.pdf.add_font("dejavu", "", str(regular))
                self.pdf.add_font("dejavu", "B", str(bold))
                self.family, self.unicode = "dejavu", True
                break

    def t(self, v: Any) -> str:
        s = "" if v is None else str(v)
        return s if self.unicode else s.encode("latin-1", "replace").decode("latin-1")

    def font(self, size: float, bold: bool = False) -> None:
        self.pdf.set_font(self.family, "B" if bold else "", size)

    def heading(self, text: str) -> None:
        if self.pdf.will_page_break(20):
            self.pdf.add_page()
        self.pdf.ln(3)
        self.font(12, bold=True)
        self.pdf.cell(0, 7, self.t(text), new_x="LMARGIN", new_y="NEXT")
        self.font(8.5)

    def line(self, text: str) -> None:
        self.font(8.5)
        self.pdf.multi_cell(0, 4.5, self.t(text), new_x="LMARGIN", new_y="NEXT")

    def table(self, header: list[str], rows: list[list[Any]], widths: list[int] | None = None):
        self.font(8)
        with self.pdf.table(
            col_widths=widths, text_align="LEFT", line_height=4.2, first_row_as_headings=True
        ) as tbl:
            r = tbl.row()
            for h in header:
                r.cell(self.t(h))
            for row in rows:
                r = tbl.row()
                for v in row:
                    r.cell(self.t(v))
        self.pdf.ln(1)

    def svg(self, svg: str) -> None:
        w = self.pdf.epw
        # the SVG's own aspect ratio decides the height: keep a chart on one page
        m = re.search(r'width="(\d+)" height="(\d+)"', svg)
        h = w * int(m.group(2)) / int(m.group(1)) if m else w / 2
        if self.pdf.will_page_break(h + 2):
            self.pdf.add_page()
        self.pdf.image(io.BytesIO(svg.encode("utf-8")), x=self.pdf.l_margin, w=w, h=h)
        self.pdf.ln(2)


def render_pdf(rep: dict[str, Any]) -> bytes:
    """The batch record `rep` (from `batch_record.build`) as PDF bytes."""
    w = _Writer()
    pdf = w.pdf
    b, c = rep["batch"], rep["counts"]
    pdf.set_title(w.t(f"Batch record {b['lot']} ({b['id']})"))
    pdf.set_author(w.t(f"edge-inspect {rep['station']}"))
    pdf.set_creation_date(dt.datetime.now(dt.timezone.utc))
    w.footer_text = f"Batch record {b['lot']} ({b['id']}), {rep['station']}"
    pdf.add_page()
    w.font(16, bold=True)
    pdf.cell(0, 9, w.t(f"Batch record - lot {b['lot']}"), new_x="LMARGIN", new_y="NEXT")
    w.line(f"Batch {b['id']}   Station {rep['station']}   Generated {rep['generated']} UTC")
    w.table(
        ["Recipe", "GTIN", "Expiry", "Started", "Ended"],
        [
            [
                b.get("recipe"),
                b.get("gtin") or "",
                b.get("expiry") or "",
                f"{b['started']} by {b.get('started_by') or ''}",
                f"{b['ended'] or 'running'} {('by ' + b['ended_by']) if b.get('ended_by') else ''}",
            ]
        ],
    )
    w.heading("Counts")
    y = c["yield"]
    w.table(
        ["Inspected", "Good", "Rejected", "Yield", "Mean latency ms"],
        [
            [
                c["inspected"],
                c["good"],
                c["rejected"],
                f"{y * 100:.2f} %" if y is not None else "",
                c["mean_latency_ms"],
            ]
        ],
    )
    w.heading("Recipe and model versions")
    w.table(
        ["Recipe", "Version", "Content hash", "Items"],
        [
            [r["recipe"], r.get("recipe_version", "-"), r.get("recipe_sha256", "-"), r["n"]]
            for r in rep["recipes"]
        ]
        or [["-", "-", "-", 0]],
        widths=[30, 15, 45, 10],
    )
    w.table(
        ["Model", "Version", "SHA-256"],
        [[m.get("name"), m.get("version"), m.get("sha256", "")] for m in rep["models"]]
        or [["no model-based tool in this recipe", "", ""]],
        widths=[25, 15, 60],
    )
    w.table(
        ["Camera", "Exposure us", "Gain"],
        [[c["camera"], c.get("exposure_us", "-"), c.get("gain", "-")] for c in rep["camera"]]
        or [["as configured (the product sets no exposure or gain)", "", ""]],
        widths=[50, 25, 25],
    )
    _challenge(w, rep["challenge"])
    svgs = chart_svgs(rep)
    w.heading("Charts")
    for name in ("pareto", "yield", "rate", "grade", "latency", "alarms"):
        w.svg(svgs[name])
    w.heading("Rejects by reason")
    w.table(["Reason", "Items"], [[r["reason"], r["n"]] for r in rep["by_reason"]] or [["none", 0]])
    if rep["ocv_by_field"]:
        w.heading("Printed text (OCV) rejects per field")
        w.table(
            ["Field", "Reason", "Items"],
            [[r["field"] or "block", r["reason"], r["n"]] for r in rep["ocv_by_field"]],
        )
    g = rep["grades"]
    w.heading("Scan grades")
    w.table(
        ["Reads", "Min", "Mean", "Max", "Below C"],
        [[g["reads"], g["min"], g["mean"], g["max"], g["below_grade_c"]]],
    )
    w.heading("Alarms")
    w.table(
        ["Code", "Message", "Severity", "Raised", "Cleared", "Ack"],
        [
            [
                a["code"],
                a["message"],
                a["severity"],
                a["raised"],
                a["cleared"] or "-",
                a["acked_by"] or "-",
            ]
            for a in rep["alarms"]
        ]
        or [["none", "", "", "", "", ""]],
        widths=[18, 34, 10, 16, 16, 8],
    )
    w.heading("Deviations (process control)")
    w.table(
        ["#", "Measure", "Rule", "Opened", "Item", "State"],
        [
            [d["id"], d["measure"], d["rule"], d["opened"], d["item_id"], d["state"]]
            for d in rep["deviations"]
        ]
        or [["none", "", "", "", "", ""]],
    )
    w.heading("Audit entries")
    w.table(
        ["#", "UTC", "User", "Action", "Target", "Reason"],
        [
            [e["id"], e["ts_utc"], e["user"], e["action"], e["target"] or "", e["reason"] or ""]
            for e in rep["audit"]
        ]
        or [["none", "", "", "", "", ""]],
        widths=[6, 22, 14, 18, 22, 18],
    )
    w.heading("Signatures")
    w.table(
        ["Name", "UTC", "Meaning", "Reason"],
        [
            [f"{s['full_name']} ({s['username']})", s["ts_utc"], s["meaning"], s["reason"]]
            for s in rep["signatures"]
        ]
        or [["not signed", "", "", ""]],
    )
    return bytes(pdf.output())


def _challenge(w: _Writer, ch: dict[str, Any]) -> None:
    w.heading("Challenge test")
    if not ch["runs"]:
        w.line("Challenge test: not run for this batch.")
        return
    w.line(f"Challenge test: {ch['status']}")
    for run in ch["runs"]:
        w.line("; ".join(f"{k}: {v}" for k, v in run.items() if not isinstance(v, (list, dict))))
        units = next((v for v in run.values() if isinstance(v, list)), None)
        if units and all(isinstance(u, dict) for u in units):
            keys = list(dict.fromkeys(k for u in units for k in u))[:6]
            w.table(keys, [[u.get(k) for k in keys] for u in units])
