"""The technician's terminal UI (Textual): overview, devices, discovery, config, events and a site report.

Everything goes through the admin API (`edge.client.AdminClient`); `edge tui` starts `tui.app.EdgeApp`.
"""
