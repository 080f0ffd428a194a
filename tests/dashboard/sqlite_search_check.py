"""The search on the embedded SQLite database (``make run``'s): run as a script in its
own process (the suite's database is PostgreSQL), it prints each query's labels as JSON.

    python -m tests.dashboard.sqlite_search_check /tmp/some/db.sqlite3
"""

import json
import os
import sys


def main(path: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "controlplane.settings"
    os.environ["DEBUG"] = "1"
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    import django
    from django.conf import settings

    django.setup()
    settings.DATABASES["default"]["NAME"] = path
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from dashboard.search import search
    from tests.dashboard.search_fleet import EXPECTED, labels, seed

    seed()
    answers = {q: labels(search(q, 50)[0]) for q in EXPECTED}
    limited, more = search("checkout", 2)
    answers["checkout limit 2"] = [*labels(limited), f"more={more}"]
    print(json.dumps(answers))


if __name__ == "__main__":
    main(sys.argv[1])
