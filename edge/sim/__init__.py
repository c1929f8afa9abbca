"""The digital twin of the line: products with their defects, drawn with ground truth.

`twin.LineSimulator` renders item i of a seeded run; `scene` is the interface one product
implements (`vials`, `blisters`, `cartons`), over shared drawing (`draw`), timing
(`timing`), drift (`drift`), the printer (`printing`), GS1 data (`gs1data`) and the
simulated serialisation system (`serialisation`); `export` writes a labelled data set
(`edge sim`). The capture source that feeds the line from it is
`edge.capture.simulator`. Defect classes, reasons and severities: `edge.taxonomy`.

Nothing is imported here, so a submodule loads only what it needs.
"""
