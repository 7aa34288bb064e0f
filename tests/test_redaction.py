"""Secrets that used to get past the redactor (issue 11, item 2): a secret that spans lines, a secret cut by the
64 KiB line limit, and a secret in an encoded form (JSON-escaped as PowerShell 5.1's ConvertTo-Json writes it,
URL-encoded, base64). Each is masked in the redactor itself, in the line splitter's cuts, and end to end on the
console, in customization.log, in the JSON report and in the text ``plan``."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from aibx.engine.output import MAX_LINE, LineSplitter
from aibx.redaction import MASK, MIN_SECRET_LENGTH, Redactor
from tests.support.cli import invoke
from tests.support.templates import image_template, shell

MARK = "Qz7kMark"  # in every line of every secret below
SECRET = f'{MARK}&sig=a/b+c<d>e f"g\\h{MARK}'  # characters every encoder escapes differently
PEM = "\n".join(
    ["-----BEGIN CERTIFICATE-----", *(f"{MARK}{i}" + "A" * 56 for i in range(3)), "-----END CERTIFICATE-----"]
)


def ps51_json(text: str) -> str:
    """What Windows PowerShell 5.1's ConvertTo-Json writes for a string: & ' < > as \\u00XX, lower-case hex."""
    out = json.dumps(text)
    for c in "&'<>":
        out = out.replace(c, f"\\u{ord(c):04x}")
    return out


def lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def base64_at(offset: int, text: str) -> str:
    return base64.b64encode(b"\x00\xff"[:offset] + text.encode()).decode()


def encoded_forms(secret: str) -> dict[str, str]:
    return {
        "raw": secret,
        "json": json.dumps(secret),
        "json-ascii": json.dumps("é" + secret, ensure_ascii=True)[7:],
        "ps51": ps51_json(secret),
        "json-slash": json.dumps(secret).replace("/", "\\/"),
        "json-upper": ps51_json(secret).replace("\\u003c", "\\u003C").replace("\\u003e", "\\u003E"),
        "url": quote(secret, safe=""),
        "url-lower": lower_hex(quote(secret, safe="")),
        "url-plus": quote_plus(secret),
        "url-path": quote(secret),
        "base64-0": base64_at(0, secret),
        "base64-1": base64_at(1, secret),
        "base64-2": base64_at(2, secret),
        "base64-urlsafe": base64.urlsafe_b64encode(b"\x00" + secret.encode()).decode(),
    }


@pytest.mark.parametrize("form", list(encoded_forms(SECRET)))
def test_every_common_encoding_of_a_secret_is_masked(form: str) -> None:
    text = encoded_forms(SECRET)[form]
    shown = Redactor([SECRET])(f"before {text} after")
    assert MASK in shown and shown.startswith("before ") and shown.endswith(" after"), shown
    # what is left of the encoding: quotes, and the few base64 characters that also depend on its neighbours
    left = shown[len("before ") : -len(" after")].replace(MASK, "").strip('"')
    assert len(left) <= 6 and MARK not in shown, shown


def test_each_line_of_a_multi_line_secret_is_masked() -> None:
    redact = Redactor([PEM, "short\nab\nend-line"])
    lines = redact.lines()
    for line in PEM.splitlines()[1:-1]:
        assert lines(f"  {line}") == f"  {MASK}"
    assert redact("x short y") == f"x {MASK} y" and redact("end-line") == MASK
    assert redact("ab") == "ab"  # shorter than MIN_SECRET_LENGTH: ordinary text, left alone
    assert MIN_SECRET_LENGTH == 4  # docs/security.md states it


@pytest.mark.parametrize("width", [64, 76])
def test_a_long_secret_wrapped_at_64_or_76_columns_is_masked_line_by_line(width: int) -> None:
    secret = base64.b64encode(MARK.encode() * 40).decode()  # 428 characters, one line
    redact = Redactor([secret])
    for i in range(0, len(secret), width):
        assert MARK not in base64.b64decode(redact(secret[i : i + width]) + "====", validate=False).decode("latin-1")
        assert redact(secret[i : i + width]) == MASK
    # and the secret encoded by `base64`, which wraps at 76
    encoded = base64.b64encode(secret.encode()).decode()
    assert all(redact(encoded[i : i + 76]) == MASK for i in range(0, len(encoded), 76))


def test_sas_signatures_are_masked_json_escaped_and_url_encoded() -> None:
    redact = Redactor()
    for text in (
        '{"uri":"https:\\/\\/a.blob.core.windows.net\\/c\\/x.sh?sv=2022\\u0026sig=Kz9%2Bsecret%3D\\u0026se=1"}',
        "https%3A%2F%2Fa.blob.core.windows.net%2Fc%2Fx.sh%3Fsv%3D2022%26sig%3DKz9%252Bsecret%253D%26se%3D1",
        "https%3a%2f%2fa%2fx%3fsig%3dKz9%252Bsecret%253D",
    ):
        shown = redact(text)
        assert "Kz9" not in shown and MASK in shown, shown


@pytest.mark.parametrize("offset", range(-20, 21, 3))
def test_a_secret_cut_by_the_line_limit_is_masked(offset: int) -> None:
    secret = f"{MARK}-0123456789-{MARK}"
    redact = Redactor([secret])
    data = b"x" * (MAX_LINE + offset) + secret.encode() + b"y" * 5000
    splitter = LineSplitter(guard=redact)
    pieces = [line for i in range(0, len(data), 4096) for line in splitter.feed(data[i : i + 4096])]
    pieces += splitter.flush()
    assert "".join(pieces) == data.decode()  # nothing lost or repeated
    assert all(len(p.encode()) <= MAX_LINE + len(secret) for p in pieces)
    assert MARK not in "".join(redact(p) for p in pieces)


def test_a_sas_signature_cut_by_the_line_limit_is_masked() -> None:
    data = b"x" * (MAX_LINE - 10) + b"https://a/b?sv=1&sig=Kz9SecretSignature%2B&se=2" + b"y" * 100
    splitter = LineSplitter(guard=Redactor())
    pieces = splitter.feed(data) + splitter.flush()
    assert len(pieces) == 2 and "Kz9" not in "".join(Redactor()(p) for p in pieces)


# ----------------------------------------------------------------------------------------------- end to end
def deployment(folder: Path, lines: list[str]) -> Path:
    resource = image_template([shell("show", *lines)])
    resource["name"] = "leaky"
    path = folder / "deploy.json"
    path.write_text(
        json.dumps(
            {
                "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
                "contentVersion": "1.0.0.0",
                "parameters": {"pem": {"type": "secureString"}, "token": {"type": "secureString"}},
                "resources": [resource],
            }
        )
    )
    return path


PY = "python3 -c"
STEP_LINES = [
    "[concat('pem=''', parameters('pem'), '''')]",
    "[concat('token=''', parameters('token'), '''')]",
    'printf "%s\\n" "$pem"',  # (a) each line of a multi-line secret
    'printf "%s" "$token" | base64',  # (c) base64, wrapped at 76 by coreutils
    'printf "xy%s" "$token" | base64 -w 0; echo',  # base64 at offset 2
    f'printf \'%s\' "$token" | {PY} \'import json,sys; print(json.dumps(sys.stdin.read()).replace("&", '
    '"\\\\u0026").replace("<", "\\\\u003c").replace(">", "\\\\u003e"))\'',  # (c) PowerShell 5.1 JSON
    f"printf '%s' \"$token\" | {PY} 'import sys,urllib.parse as u; print(u.quote(sys.stdin.read(), safe=\"\"))'",
    f"printf '%s' \"$token\" | {PY} 'import sys,urllib.parse as u; print(u.quote_plus(sys.stdin.read()).lower())'",
    f'head -c {MAX_LINE - 7} /dev/zero | tr "\\0" x; printf "%s\\n" "$token"',  # (b) cut by the 64 KiB limit
]


def test_secrets_in_every_form_are_masked_on_console_log_report_and_plan(tmp_path: Path) -> None:
    if shutil.which("python3") is None or shutil.which("base64") is None:
        pytest.fail("python3 and base64 are part of this machine's test tools")
    token = f"{MARK}tok&en<x> y{MARK}"
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"parameters": {"pem": {"value": PEM}}}))
    template = deployment(tmp_path, STEP_LINES)
    log, report = tmp_path / "c.log", tmp_path / "r.json"
    result = invoke(
        "run", template, "--host", "local", "--log", log, "--report", report,
        "--parameters", params, "-p", f"token={token}",
    )  # fmt: skip
    assert result.code == 0, result.text
    assert result.out.count(MASK) >= 10
    plan = invoke("plan", template, "--parameters", params, "-p", f"token={token}")
    assert plan.code == 0, plan.text
    written = {"console": result.text, "log": log.read_text(), "report": report.read_text(), "plan": plan.text}
    encoded = [token, base64.b64encode(token.encode()).decode()[:20], quote(token, safe="")[:20], MARK]
    for where, text in written.items():
        for form in encoded:
            assert form not in text, f"{form!r} in {where}"
    # the output still says what happened around the secrets
    assert "x" * 1000 in written["log"] and written["log"].count(MASK) >= 10
