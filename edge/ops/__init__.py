"""Running unattended: systemd watchdog, health and metrics, predictive maintenance, logs.

Each module has one job; `edge.app.COMPONENTS` lists the ones that run as components.
Nothing here is on the inspection hot path: they read the bus and component status.
"""
