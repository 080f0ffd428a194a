"""Sets the test provider up, run as a process of its own (its settings are not the
tests'): ``setup <redirect_uri>...`` (Switchyard's callbacks) migrates its SQLite file,
makes an RSA signing key, the user "pat" and the confidential client "switchyard";
``groups <a,b,...>`` sets pat's groups (the ``groups`` claim of the next sign-in)."""

import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.e2e.oidc_op.settings")
django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from oidc_provider.models import Client, ResponseType  # noqa: E402

from tests.e2e.oidc_op.persona import CLIENT_ID, CLIENT_SECRET, PASSWORD, USERNAME  # noqa: E402


def setup(redirect_uris: list[str]) -> None:
    call_command("migrate", verbosity=0)
    call_command("creatersakey")
    User.objects.create_user(
        USERNAME, email="pat@acme.example", password=PASSWORD, first_name="Pat", last_name="Lee"
    )
    client = Client.objects.create(
        name="Switchyard",
        client_type="confidential",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        jwt_alg="RS256",
        require_consent=True,
        reuse_consent=False,
    )
    client.redirect_uris = redirect_uris
    # Where RP-initiated logout may send the browser back: each site's sign-in page.
    client.post_logout_redirect_uris = [
        uri.replace("/oidc/callback/", "/login/") for uri in redirect_uris
    ]
    client.scope = ["openid", "email", "profile", "groups"]
    client.save()
    client.response_types.add(ResponseType.objects.get(value="code"))


def groups(names: list[str]) -> None:
    user = User.objects.get(username=USERNAME)
    user.groups.set([Group.objects.get_or_create(name=name)[0] for name in names])


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "setup":
        setup(args)
    else:
        groups([name for name in ",".join(args).split(",") if name])
