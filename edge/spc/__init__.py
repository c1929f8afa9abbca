"""Statistical process control of the product: see the process drift before it makes rejects.

Spec limits (a tool's tolerance) decide PASS or REJECT for one item. SPC limits say whether the
*process* is still the one that was validated: they come from a reference window of the batch
(or a validated baseline stored with the product), and a trend inside spec raises a deviation
while every item still passes. The two never mix: nothing here changes a verdict.

- `charts.py`: reference limits, individuals, EWMA and CUSUM charts for measurements, the p-chart
  for a reject reason's rate;
- `rules.py`: Western Electric and Nelson run rules on standardised values;
- `monitor.py`: one monitor per batch, fed every item's measurements, emitting deviation alerts.
"""
