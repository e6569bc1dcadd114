"""Reports built from the model and its history: the annual city check-up (issue 26 item 5).

A report is computed once as plain data (:mod:`cim.report.checkup`, JSON-able, the numbers the API answers), then
written as HTML (:mod:`cim.report.html`, inline CSS and SVG charts: no network) and as PDF (:mod:`cim.report.pdf`,
fpdf2 with a CJK font found on the machine). :func:`cim.report.build.write_checkup` does all three.

Layer: beside :mod:`cim.pipeline` — it reads the store, the queries, the cases' assessment and the renderer, the
layers below, and nothing reads it but the web layer and the command line.
"""
