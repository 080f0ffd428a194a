"""Project-level pieces every app shares: checks, health, errors, audit, API bases."""
