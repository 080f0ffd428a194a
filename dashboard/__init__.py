"""The browser UI: fleet overview, circuit pages, controls and live updates."""
