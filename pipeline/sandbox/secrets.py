"""Fake secrets in realistic places: the planted-secrets corpus of the redaction stage.

Why: redaction (:mod:`pipeline.redact`) is only as good as what it is shown to find. This module
plants the credentials that real research-software releases leak (cloud keys, service tokens,
passwords in configuration files, private keys, credentials in URLs, tokens in notebooks, a token
split across two lines) in the files and syntaxes where they are found, and says exactly what it
planted. The sandbox serves them as one record's archive (``ZenodoService.add_planted_secrets``);
the recall test and ``benchmarks/bench_redact.py`` use the same trees.

Every value is built at run time from a seeded generator and the public *shape* of its kind
(prefix, alphabet, length), so nothing that looks like a live key is ever committed: a repository
scanner has nothing to block, and each seed gives other values.
"""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass

_B64 = string.ascii_letters + string.digits + "+/"
_B64URL = string.ascii_letters + string.digits + "-_"
_ALNUM = string.ascii_letters + string.digits
_LOWER_ALNUM = string.ascii_lowercase + string.digits
_HEX = "0123456789abcdef"


@dataclass(frozen=True)
class Planted:
    """One planted secret: its kind, where it is, and the text that must not survive.

    ``values`` are the fragments a reader could use (a private key's body lines; the two halves
    and the whole of a split token): none may appear in a published image.
    """

    kind: str
    path: str
    line: int  # 1-based line where the secret starts
    values: tuple[str, ...]


def _pick(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _password(rng: random.Random, symbols: str = "!#%&*?") -> str:
    """A person's password. In a URL only unreserved symbols (RFC 3986 ``-._~``): others are
    percent-encoded there, and detect-secrets' URL rule stops at sub-delimiters (README)."""
    word = rng.choice(("Falcon", "Glacier", "Orbit", "Lattice", "Quasar", "Tundra", "Kelvin"))
    return f"{word}{rng.randint(10, 9999)}{rng.choice(symbols)}{_pick(rng, _ALNUM, 5)}"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt(rng: random.Random) -> str:
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64url(json.dumps({"sub": str(rng.randint(10**6, 10**7)), "name": "analysis-bot",
                                  "iat": rng.randint(1_600_000_000, 1_800_000_000)}).encode())
    return f"{header}.{payload}.{_pick(rng, _B64URL, 43)}"


def _pem_body(rng: random.Random, lines: int, first: str = "MII") -> list[str]:
    body = [first + _pick(rng, _B64, 61)] + [_pick(rng, _B64, 64) for _ in range(lines - 2)]
    return [*body, _pick(rng, _B64, 40) + "=="]


class _Tree:
    """Files being written, and what was planted where."""

    def __init__(self) -> None:
        self.files: dict[str, list[str]] = {}
        self.planted: list[Planted] = []

    def add(self, path: str, text: str, kind: str | None = None,
            *values: str) -> None:
        """Append ``text`` (one or more lines) to ``path``; it plants ``values`` of ``kind``."""
        lines = self.files.setdefault(path, [])
        if kind:
            self.planted.append(Planted(kind, path, len(lines) + 1, values))
        lines.extend(text.split("\n"))

    def build(self) -> dict[str, bytes]:
        return {path: ("\n".join(lines) + "\n").encode() for path, lines in self.files.items()}


def planted_tree(rng: random.Random, *, package: str = "skyfit") -> tuple[dict[str, bytes],
                                                                          list[Planted]]:
    """A small research-software tree with one secret of each kind (34), and the list of them.

    Ordinary code surrounds the secrets (imports, functions, comments) so that lines, pages and
    file types are realistic; nothing else in the tree is a secret.
    """
    t = _Tree()
    t.add("README.md", f"# {package}\n\nFits sky models. Configure `.env` from `.env.example`.\n")

    aws_id = rng.choice(("AKIA", "ASIA")) + _pick(rng, string.ascii_uppercase + string.digits, 16)
    aws_secret = _pick(rng, _B64, 40)
    # Django's alphabet; the first character a letter, as detect-secrets' keyword rule needs
    django = rng.choice(string.ascii_lowercase) + _pick(
        rng, string.ascii_lowercase + string.digits + "!@#%^&*(-_=+)", 49)
    db_password = _password(rng, "-._~")
    t.add(".env", "# local settings -- never commit (but they did)\nDEBUG=0")
    t.add(".env", f"AWS_ACCESS_KEY_ID={aws_id}", "AWS access key id in .env", aws_id)
    t.add(".env", f"AWS_SECRET_ACCESS_KEY={aws_secret}", "AWS secret key in .env", aws_secret)
    t.add(".env", f"DJANGO_SECRET_KEY={django}", "Django secret key in .env", django)
    t.add(".env", f"DATABASE_URL=postgres://skyfit:{db_password}@db.internal:5432/skyfit",
          "database password in a URL", db_password)

    yaml_password = _password(rng)
    slack_hook = (f"https://hooks.slack.com/services/T{_pick(rng, string.ascii_uppercase, 8)}/"
                  f"B{_pick(rng, string.ascii_uppercase + string.digits, 10)}/"
                  f"{_pick(rng, _ALNUM, 24)}")
    t.add("config/pipeline.yaml", "name: skyfit\nthreshold: 0.25\nstorage:\n  host: db.internal")
    t.add("config/pipeline.yaml", f"  password: {yaml_password}", "password in YAML",
          yaml_password)
    t.add("config/pipeline.yaml", "notify:")
    t.add("config/pipeline.yaml", f"  slack: {slack_hook}", "Slack webhook URL in YAML",
          slack_hook)

    compose_password = _password(rng)
    t.add("docker-compose.yml", "services:\n  db:\n    image: postgres:16\n    environment:")
    t.add("docker-compose.yml", f"      - POSTGRES_PASSWORD={compose_password}",
          "password in docker-compose", compose_password)

    api_key_hex = _pick(rng, _HEX, 32)
    client_secret = _pick(rng, _ALNUM, 32)
    t.add("config/app.json", '{\n  "service": "skyfit-archive",')
    t.add("config/app.json", f'  "api_key": "{api_key_hex}",', "API key in JSON", api_key_hex)
    t.add("config/app.json", f'  "client_secret": "{client_secret}",',
          "OAuth client secret in JSON", client_secret)
    t.add("config/app.json", '  "retries": 3\n}')

    account_key = _pick(rng, _B64, 86) + "=="
    t.add("config/appsettings.json", '{\n  "Storage": {')
    t.add("config/appsettings.json",
          f'    "Connection": "DefaultEndpointsProtocol=https;AccountName=skyfitdata;'
          f'AccountKey={account_key};EndpointSuffix=core.windows.net"',
          "Azure storage account key", account_key)
    t.add("config/appsettings.json", "  }\n}")

    gh = "ghp_" + _pick(rng, _ALNUM, 36)
    stripe = "sk" + "_live_" + _pick(rng, _ALNUM, 24)
    salt = _pick(rng, _B64, 44)
    hmac_hex = _pick(rng, _HEX, 64)
    t.add(f"src/{package}/settings.py", '"""Settings for the archive uploader."""\n\nimport os\n')
    t.add(f"src/{package}/settings.py", f'GITHUB_TOKEN = "{gh}"', "GitHub token in Python", gh)
    t.add(f"src/{package}/settings.py", f'STRIPE_KEY = "{stripe}"', "Stripe live key in Python",
          stripe)
    t.add(f"src/{package}/settings.py", f'SIGNING_SALT = "{salt}"',
          "high-entropy base64 string in Python", salt)
    t.add(f"src/{package}/settings.py", f'WEBHOOK_HMAC = "{hmac_hex}"',
          "high-entropy hex string in Python", hmac_hex)
    t.add(f"src/{package}/settings.py", 'TIMEOUT = float(os.environ.get("TIMEOUT", "30"))')

    openai = f"sk-{_pick(rng, _ALNUM, 20)}T3BlbkFJ{_pick(rng, _ALNUM, 20)}"
    jwt = _jwt(rng)
    telegram = f"{rng.randint(10**8, 10**9 - 1)}:AA{_pick(rng, _ALNUM + '_-', 33)}"
    t.add(f"src/{package}/client.py", "import openai\nimport requests\nimport telebot\n")
    t.add(f"src/{package}/client.py", f'openai.api_key = "{openai}"', "OpenAI key in Python",
          openai)
    t.add(f"src/{package}/client.py", f'HEADERS = {{"Authorization": "Bearer {jwt}"}}',
          "JSON Web Token in a header", jwt)
    t.add(f"src/{package}/client.py", f'bot = telebot.TeleBot("{telegram}")',
          "Telegram bot token in a call", telegram)
    t.add(f"src/{package}/client.py",
          "\n\ndef fetch(url):\n    return requests.get(url, headers=HEADERS, timeout=30).json()")

    rest = _pick(rng, _ALNUM, 36)
    first, second = "ghp_" + rest[:16], rest[16:]
    split_token = first + second
    t.add(f"src/{package}/upload.py", '"""Upload results to the lab\'s GitHub."""\n')
    t.add(f"src/{package}/upload.py", f'TOKEN = ("{first}"\n         "{second}")',
          "GitHub token split across two lines", split_token, first, second)

    slack_token = (f"xoxb-{rng.randint(10**10, 10**11)}-{rng.randint(10**10, 10**11)}-"
                   f"{_pick(rng, _LOWER_ALNUM, 24)}")
    sendgrid = f"SG.{_pick(rng, _B64URL, 22)}.{_pick(rng, _B64URL, 43)}"
    ci_password = _password(rng, "-._~")
    t.add("scripts/deploy.sh", "#!/bin/sh\nset -eu\n")
    t.add("scripts/deploy.sh", f"export SENDGRID_API_KEY={sendgrid}", "SendGrid key in shell",
          sendgrid)
    cut = len(slack_token) // 2
    t.add("scripts/deploy.sh", f"export SLACK_TOKEN={slack_token[:cut]}\\\n{slack_token[cut:]}",
          "Slack token split by a shell line continuation", slack_token,
          slack_token[:cut], slack_token[cut:])
    t.add("scripts/deploy.sh", f"curl -fsS https://deploy:{ci_password}@ci.example.org/hooks/run",
          "password in a URL in shell", ci_password)

    notebook_key = _pick(rng, _ALNUM, 40)
    gitlab = "glpat-" + _pick(rng, _ALNUM, 20)
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# Quick look at the fits\n"]},
             {"cell_type": "code", "execution_count": 1, "metadata": {}, "outputs": [],
              "source": ["import skyfit\n", f'api_key = "{notebook_key}"\n',
                         f'gitlab_token = "{gitlab}"\n', "skyfit.plot(api_key=api_key)"]}]
    notebook = json.dumps({"cells": cells, "metadata": {"kernelspec": {"name": "python3"}},
                           "nbformat": 4, "nbformat_minor": 5}, indent=1)
    nb_lines = notebook.split("\n")
    key_line = next(i for i, line in enumerate(nb_lines) if notebook_key in line)
    t.add("notebooks/explore.ipynb", "\n".join(nb_lines[:key_line]))
    t.add("notebooks/explore.ipynb", nb_lines[key_line], "API key in a notebook cell",
          notebook_key)
    t.add("notebooks/explore.ipynb", nb_lines[key_line + 1], "GitLab token in a notebook cell",
          gitlab)
    t.add("notebooks/explore.ipynb", "\n".join(nb_lines[key_line + 2:]))

    rsa = _pem_body(rng, 12)
    t.add("deploy/id_rsa", "-----BEGIN RSA PRIVATE KEY-----")
    t.add("deploy/id_rsa", "\n".join(rsa) + "\n-----END RSA PRIVATE KEY-----",
          "RSA private key (PEM)", *rsa)
    openssh = _pem_body(rng, 6, "b3BlbnNzaC1rZXktdjEAAAAA")
    t.add("deploy/id_ed25519", "-----BEGIN OPENSSH PRIVATE KEY-----")
    t.add("deploy/id_ed25519", "\n".join(openssh) + "\n-----END OPENSSH PRIVATE KEY-----",
          "OpenSSH private key", *openssh)

    gcp = _pem_body(rng, 10, "MIIEv")
    pem_json = ("-----BEGIN PRIVATE KEY-----\\n" + "\\n".join(gcp)
                + "\\n-----END PRIVATE KEY-----\\n")
    t.add("deploy/service-account.json", '{\n  "type": "service_account",\n'
          '  "project_id": "skyfit-archive",')
    t.add("deploy/service-account.json", f'  "private_key": "{pem_json}",',
          "private key inside a service-account JSON", *gcp)
    t.add("deploy/service-account.json",
          '  "client_email": "uploader@skyfit-archive.iam.gserviceaccount.com"\n}')

    npm = "npm_" + _pick(rng, _ALNUM, 36)
    t.add(".npmrc", f"//registry.npmjs.org/:_authToken={npm}", "npm token in .npmrc", npm)
    pypi = "pypi-AgEIcHlwaS5vcmc" + _pick(rng, _B64URL, 80)
    t.add(".pypirc", "[pypi]\nusername = __token__")
    t.add(".pypirc", f"password = {pypi}", "PyPI token in .pypirc", pypi)

    java_password = _password(rng)
    t.add(f"java/src/main/java/org/{package}/Db.java",
          f"package org.{package};\n\npublic final class Db {{")
    t.add(f"java/src/main/java/org/{package}/Db.java",
          f'    private static final String DB_PASSWORD = "{java_password}";',
          "password in Java", java_password)
    t.add(f"java/src/main/java/org/{package}/Db.java", "}")

    c_key = _pick(rng, _ALNUM, 32)
    t.add("csrc/upload.c", '#include <stdio.h>\n\n/* archive upload */')
    t.add("csrc/upload.c", f'static const char api_key[] = "{c_key}";', "API key in C", c_key)

    go_secret = _pick(rng, _ALNUM, 28)
    t.add("go/main.go", 'package main\n\nimport "fmt"\n\nfunc main() {')
    t.add("go/main.go", f'\tclientSecret := "{go_secret}"', "client secret in Go", go_secret)
    t.add("go/main.go", "\tfmt.Println(len(clientSecret))\n}")

    discord = (rng.choice("MNO") + _pick(rng, _B64URL, 23) + "." + _pick(rng, _B64URL, 6) + "."
               + _pick(rng, _B64URL, 27))
    t.add("web/bot.js", "// community bot")
    t.add("web/bot.js", f'client.login("{discord}");', "Discord bot token in JavaScript", discord)

    twilio = "AC" + _pick(rng, _LOWER_ALNUM, 32)
    mailchimp = _pick(rng, _LOWER_ALNUM, 32) + f"-us{rng.randint(1, 20)}"
    t.add("R/notify.R", "# send a text when a fit finishes")
    t.add("R/notify.R", f'twilio_sid <- "{twilio}"', "Twilio account SID in R", twilio)
    t.add("R/notify.R", f'mailchimp <- "{mailchimp}"', "Mailchimp key in R", mailchimp)
    return t.build(), t.planted
