"""Support for scripts/fuzz-api: seeds real resources, points the fuzzer at
them, and reports per-operation coverage. Runs with the venv's python.

    fuzz_support.py seed BASE BIN DATA_DIR WORK   # seed, write WORK/fixtures.json
                                                  # and WORK/schemathesis.toml
    fuzz_support.py coverage NDJSON...            # per-operation table; exit 1
                                                  # when an operation is mostly 404/429

Imported by schemathesis (SCHEMATHESIS_HOOKS=fuzz_support), it is also the
`before_call` hook: a generated id that is well-formed (it matches its
schema) is swapped for a seeded id of the same type, so fuzzed input lands on
resources that exist; operations that destroy or consume their target
(deletes, revokes, accepts, completes, transfers) get a freshly created one on
every call, so they never run out of targets and never take the shared ones
with them. Malformed ids are sent as generated (they test the 400s), and the
stateful phase keeps the ids its links carry.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections import Counter, defaultdict

import requests

API = "/api/v1"

# Every id the API takes: a type prefix and 26 Crockford base32 characters.
ID = re.compile(r"^([a-z]{3})_[0-7OoIiLl][0-9A-TV-Za-tv-z]{25}$")

# resource_type (path, query or body) -> the prefix of the id that goes with it.
TYPE_PREFIX = {"share": "shr", "folder": "fld", "file": "fil", "acl": "shr", "link": "lnk"}


# ------------------------------------------------------------------ client


class Client:
    """A bearer-token JSON client of the API under test."""

    def __init__(self, base: str, token: str):
        self.base = base.rstrip("/") + API
        self.token = token
        self.local = threading.local()

    def session(self) -> requests.Session:
        s = getattr(self.local, "s", None)
        if s is None:
            s = requests.Session()
            s.headers["Authorization"] = f"Bearer {self.token}"
            self.local.s = s
        return s

    def call(self, method: str, path: str, *, ok=(200, 201, 204), **kw) -> dict:
        r = self.session().request(method, self.base + path, timeout=60, **kw)
        # The log position of this thread's last write: a request that must
        # see it (a fresh target, below) sends it back.
        if r.headers.get("X-ScaiDrive-Position"):
            self.local.position = r.headers["X-ScaiDrive-Position"]
        if r.status_code not in ok:
            raise RuntimeError(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else {}

    def post(self, path: str, body: dict | None = None, **kw) -> dict:
        return self.call("POST", path, json=body if body is not None else {}, **kw)

    def get(self, path: str, **kw) -> dict:
        return self.call("GET", path, **kw)


def op_key(method: str, path: str) -> str:
    """"METHOD /path" of an operation, without the /api/v1 prefix."""
    return f"{method.upper()} {path.removeprefix(API)}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# ------------------------------------------------------------------ resources
# One function per resource; each creates it through the API and answers its id.


def new_share(c: Client, owner: str, name: str | None = None) -> str:
    return c.post("/shares", {"name": name or unique("share"), "share_type": "project", "owner_id": owner})["id"]


def new_folder(c: Client, share: str, parent: str | None = None) -> str:
    return c.post("/folders", {"share_id": share, "parent_id": parent, "name": unique("folder")})["id"]


def new_file(c: Client, share: str, folder: str | None, data: bytes = b"fuzz fixture\n") -> dict:
    fields = {"share_id": (None, share)}
    if folder:
        fields["folder_id"] = (None, folder)
    fields["file"] = (unique("file") + ".txt", data, "text/plain")
    return c.call("POST", "/files", files=fields)


def new_session(c: Client, share: str, folder: str | None, data: bytes, *, staged: bool) -> str:
    """An upload session; `staged` sends its one chunk (ready to complete)."""
    body = {"share_id": share, "file_name": unique("upload") + ".txt", "file_size": len(data), "mime_type": "text/plain"}
    if folder:
        body["folder_id"] = folder
    sid = c.post("/uploads", body)["session_id"]
    if staged:
        c.call("PUT", f"/uploads/{sid}/chunks/0", data=data)
    return sid


def new_link(c: Client, share: str, rtype: str, rid: str, link_type: str = "DOWNLOAD", **extra) -> dict:
    body = {"resource_type": rtype, "resource_id": rid, "share_id": share, "link_type": link_type, **extra}
    return c.post("/external/links", body)


def new_group(c: Client) -> str:
    return c.post("/admin/groups", {"name": unique("group")})["id"]


def new_webhook(c: Client) -> str:
    # Never called: the fuzzed server's delivery poll is a day.
    body = {"name": unique("hook"), "url": "http://127.0.0.1:9/hook", "categories": ["sharing"], "secret": "fuzz-secret-0123456789"}
    return c.post("/admin/webhooks", body)["id"]


def new_connector(c: Client, share: str) -> str:
    # Points at a closed local port: tests and runs fail fast, nothing is synced.
    body = {"name": unique("connector"), "server_host": "127.0.0.1", "server_port": 9, "share_name": "fuzz",
            "username": "fuzz", "password": "fuzz-password", "target_share_id": share, "sync_interval_minutes": 0}
    return c.post("/smb-connectors", body)["id"]


def new_invitation(c: Client, share: str, email: str | None = None) -> str:
    body = {"email": email or unique("guest") + "@example.com", "role": "reader"}
    return c.post(f"/shares/{share}/invitations", body)["id"]


def mint(bin_path: str, data_dir: str, tenant: str, user: str, scope: str) -> str:
    out = subprocess.run(
        [bin_path, "token", "--data-dir", data_dir, "--tenant", tenant, "--user", user,
         "--email", f"{user}@example.com", "--name", user.title(), "--scope", scope, "--ttl-hours", "2"],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()


# ------------------------------------------------------------------ seeding


def seed(base: str, bin_path: str, data_dir: str, work: str) -> None:
    admin_token = mint(bin_path, data_dir, "fuzz", "fuzzer", "*")
    c = Client(base, admin_token)
    me = c.get("/users/me")
    fx: dict = {"base": base, "token": admin_token, "me": me["id"], "email": me["email"]}

    # Other users: `victim` is the one admin user operations change (suspend,
    # quotas, membership), never the fuzzer; `member` stays a member of the
    # main share; `owner` owns a share and invites the fuzzer (its invitations
    # are what accept/decline consume).
    users = {}
    for name, scope in (("victim", "files:write"), ("member", "files:write"), ("owner", "files:write")):
        tok = mint(bin_path, data_dir, "fuzz", name, scope)
        users[name] = {"token": tok, "id": Client(base, tok).get("/users/me")["id"]}
    fx["owner_token"] = users["owner"]["token"]

    share = new_share(c, me["id"], "fuzz main")
    folder = new_folder(c, share)
    new_folder(c, share, folder)  # a child, so listings and moves have one
    f = new_file(c, share, folder)
    # A second version, so version restores have two to choose from.
    staged_replace = c.post("/uploads", {
        "share_id": share, "folder_id": folder, "file_name": f["name"], "file_size": 7,
        "replace_file_id": f["id"], "mime_type": "text/plain"})["session_id"]
    c.call("PUT", f"/uploads/{staged_replace}/chunks/0", data=b"second\n")
    v2 = c.post(f"/uploads/{staged_replace}/complete")
    session = new_session(c, share, folder, b"open session\n", staged=False)

    group = new_group(c)
    c.post(f"/admin/groups/{group}/members/{users['victim']['id']}")
    c.post(f"/shares/{share}/members", {"principal_type": "user", "principal_id": users["member"]["id"], "role": "reader"})
    c.post(f"/shares/{share}/members", {"principal_type": "group", "principal_id": group, "role": "reader"})
    c.post(f"/permissions/acl/folder/{folder}", {"principal_type": "user", "principal_id": users["victim"]["id"], "ace_type": "allow", "permissions": ["READ"]}, ok=(200, 201))
    invitation = new_invitation(c, share)
    webhook = new_webhook(c)
    connector = new_connector(c, share)

    # Links: one the owner-side operations change (PATCH, regenerate), and
    # one per recipient operation, unlocked into an access token up front,
    # on a folder and file of their own that no other operation is pointed at.
    link = new_link(c, share, "file", f["id"])
    pub_dir = new_folder(c, share)
    pub_f = new_file(c, share, pub_dir)
    pub_file = new_link(c, share, "file", pub_f["id"])
    pub_folder = new_link(c, share, "folder", pub_dir, "VIEW")
    pub_upload = new_link(c, share, "folder", pub_dir, "UPLOAD", upload_folder_id=pub_dir)
    # One-time codes are throttled per link and caller IP (10 per 15 min, by
    # contract): the fuzzed requests for codes take turns over a pool of
    # require_email links, so they reach the handler rather than the throttle.
    code_links = [new_link(c, share, "file", pub_f["id"], require_email=True)["token"] for _ in range(CODE_LINKS)]
    anon = requests.Session()

    def unlock(l: dict) -> str:
        r = anon.post(f"{c.base}/public/links/{l['token']}/unlock", json={}, timeout=60)
        r.raise_for_status()
        return r.json()["access_token"]

    # Sync: a device, its cursor, and a conflict (two devices edit one file).
    device = "fuzz-device"
    c.post("/sync/devices", {"device_id": device, "device_name": "Fuzz", "platform": "linux", "client_version": "1"})
    c.post("/sync/devices", {"device_id": "fuzz-device-b", "device_name": "Fuzz B", "platform": "linux", "client_version": "1"})
    c.get(f"/sync/status?share_id={share}&device_id={device}")
    cf = new_file(c, share, None)
    a = new_session(c, share, None, b"from A\n", staged=True)
    b = new_session(c, share, None, b"from B\n", staged=True)
    c.post("/sync/apply", {"device_id": device, "share_id": share, "conflict_resolution": "MANUAL", "changes": [
        {"change_type": "updated", "resource_type": "file", "resource_id": cf["id"], "base_version_id": cf["version_id"], "upload_session_id": a}]})
    clash = c.post("/sync/apply", {"device_id": "fuzz-device-b", "share_id": share, "conflict_resolution": "MANUAL", "changes": [
        {"change_type": "updated", "resource_type": "file", "resource_id": cf["id"], "base_version_id": cf["version_id"], "upload_session_id": b}]}, ok=(409,))
    conflict = clash.get("conflict_id")

    # A share in the trash (restore), and a quota-only share: a fuzzed hard
    # limit of a few bytes there blocks nothing the rest of the run writes.
    trashed = new_share(c, me["id"])
    c.call("DELETE", f"/shares/{trashed}")
    quota_share = new_share(c, me["id"])

    # Deliveries exist once an event of a subscribed category is recorded.
    deliveries = c.get(f"/admin/webhooks/{webhook}/deliveries").get("deliveries", [])

    fx["ids"] = {
        "shr": share, "fld": folder, "fil": f["id"], "ver": v2.get("version_id") or f["version_id"],
        "upl": session, "lnk": link["id"], "grp": group, "usr": users["victim"]["id"],
        "whk": webhook, "inv": invitation, "cnn": connector, "cfl": conflict, "tnt": me["tenant_id"], "prt": me["partner_id"],
    }
    # Operations that may delete or move what they name get ids of their own.
    sync_dir = new_folder(c, share)
    fx["ids_for"] = {
        "/public/": {"fil": pub_f["id"], "fld": pub_dir},
        "POST /sync/apply": {"fil": new_file(c, share, sync_dir)["id"], "fld": sync_dir},
        "/quotas/shares/": {"shr": quota_share},
    }
    fx["quota_share"] = quota_share
    fx["trashed_share"] = trashed
    fx["device"] = device
    fx["member"] = users["member"]["id"]
    fx["delivery"] = deliveries[0]["id"] if deliveries else None
    fx["public_link_ids"] = [pub_file["id"], pub_folder["id"], pub_upload["id"]]
    fx["code_links"] = code_links
    # Accounts the run depends on: never suspended or demoted by the fuzzer.
    fx["accounts"] = [me["id"], users["owner"]["id"], users["member"]["id"]]
    fx["links"] = {
        "file": {"token": pub_file["token"], "short_code": pub_file["short_code"], "access": unlock(pub_file)},
        "folder": {"token": pub_folder["token"], "access": unlock(pub_folder)},
        "upload": {"token": pub_upload["token"], "access": unlock(pub_upload)},
    }
    doc = c.get("/openapi.json")
    fx["patterns"] = path_patterns(doc)
    fx["operations"] = sorted(
        op_key(m, p) for p, item in doc["paths"].items() for m, op in item.items() if isinstance(op, dict) and "responses" in op)
    fx["scaikey_secret"] = os.environ.get("SCAIDRIVE_SCAIKEY_WEBHOOK_SECRET", "")
    with open(os.path.join(work, "fixtures.json"), "w") as out:
        json.dump(fx, out, indent=2)
    write_config(fx, work)
    print(f"seeded: share {share}, folder {folder}, file {f['id']}, session {session}, link {link['id']}, "
          f"group {group}, webhook {webhook}, invitation {invitation}, device {device}, conflict {conflict}")


def path_patterns(doc: dict) -> dict:
    """"METHOD /path" -> {path parameter: the pattern its schema sets}."""
    schemas = doc.get("components", {}).get("schemas", {})

    def resolve(s: dict) -> dict:
        while "$ref" in s:
            s = schemas.get(s["$ref"].rsplit("/", 1)[-1], {})
        return s

    out: dict = {}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            for p in op.get("parameters", []) + item.get("parameters", []):
                if p.get("in") == "path":
                    pattern = resolve(p.get("schema", {})).get("pattern")
                    if pattern:
                        out.setdefault(op_key(method, path), {})[p["name"]] = pattern
    return out


def write_config(fx: dict, work: str) -> None:
    """The run's schemathesis config: the base settings, the fuzzer's token,
    and the link access token each recipient-side operation needs."""
    base = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemathesis.toml")).read()
    lines = [f'headers = {{ Authorization = "Bearer {fx["token"]}" }}', "", base, ""]
    by_op = {
        "^/api/v1/public/links/\\{token\\}/(content|preview)$": fx["links"]["file"]["access"],
        "^/api/v1/public/links/\\{token\\}/children$": fx["links"]["folder"]["access"],
        "^/api/v1/public/links/\\{token\\}/upload$": fx["links"]["upload"]["access"],
    }
    for regex, access in by_op.items():
        lines += ["[[operations]]", f"include-path-regex = '{regex}'", f'headers = {{ Authorization = "Bearer {access}" }}', ""]
    # Semantic search answers 501 by design where no embedding provider is
    # configured (the fuzzed server may run without one).
    lines += ["[[operations]]", "include-path-regex = '^/api/v1/search/(semantic|hybrid|context)$'",
              'checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "501"]', ""]
    with open(os.path.join(work, "schemathesis.toml"), "w") as out:
        out.write("\n".join(lines))


# ------------------------------------------------------------------ the hook

_FX: dict | None = None
_CLIENT: Client | None = None
_OWNER: Client | None = None


def fixtures() -> dict:
    global _FX, _CLIENT, _OWNER
    if _FX is None:
        with open(os.environ["FUZZ_FIXTURES"]) as f:
            _FX = json.load(f)
        _CLIENT = Client(_FX["base"], _FX["token"])
        _OWNER = Client(_FX["base"], _FX["owner_token"])
    return _FX


def _fresh_invitation_to_me() -> str:
    """An invitation of the fuzzer to a share of another user."""
    fx = fixtures()
    share = new_share(_OWNER, _owner_id())
    return new_invitation(_OWNER, share, fx["email"])


def _owner_id() -> str:
    fx = fixtures()
    if "owner_id" not in fx:
        fx["owner_id"] = _OWNER.get("/users/me")["id"]
    return fx["owner_id"]


def _fresh_member() -> str:
    """A new group made a member of the main share (unique per call: the two
    workers never remove the same member)."""
    share = fixtures()["ids"]["shr"]
    group = new_group(_CLIENT)
    _CLIENT.post(f"/shares/{share}/members", {"principal_type": "group", "principal_id": group, "role": "reader"})
    return group


def _fresh_group_member() -> tuple[str, str]:
    """A new group with the victim in it."""
    user = fixtures()["ids"]["usr"]
    group = new_group(_CLIENT)
    _CLIENT.post(f"/admin/groups/{group}/members/{user}")
    return group, user


def _fresh(key: str, params: dict) -> dict:
    """Fresh targets for an operation that destroys or consumes its target."""
    fx = fixtures()
    c = _CLIENT
    ids = fx["ids"]
    share, folder = ids["shr"], ids["fld"]
    if key == "DELETE /shares/{id}":
        return {"id": new_share(c, fx["me"])}
    if key == "POST /permissions/ownership/{resource_type}/{id}/transfer":
        kind = params.get("resource_type")
        if kind == "share":
            return {"id": new_share(c, fx["me"])}
        if kind == "folder":
            return {"id": new_folder(c, share, folder)}
        if kind == "file":
            return {"id": new_file(c, share, folder)["id"]}
        return {}
    if key == "DELETE /folders/{id}":
        return {"id": new_folder(c, share, folder)}
    if key == "DELETE /files/{id}":
        return {"id": new_file(c, share, folder)["id"]}
    if key == "DELETE /uploads/{id}":
        return {"id": new_session(c, share, folder, b"abort me\n", staged=False)}
    if key == "POST /uploads/{id}/complete":
        return {"id": new_session(c, share, folder, b"complete me\n", staged=True)}
    if key == "DELETE /external/links/{id}":
        return {"id": new_link(c, share, "file", ids["fil"])["id"]}
    if key == "DELETE /admin/groups/{group_id}":
        return {"group_id": new_group(c)}
    if key == "DELETE /admin/groups/{group_id}/members/{user_id}":
        group, user = _fresh_group_member()
        return {"group_id": group, "user_id": user}
    if key == "DELETE /admin/webhooks/{webhook_id}":
        return {"webhook_id": new_webhook(c)}
    if key == "DELETE /smb-connectors/{connector_id}":
        return {"connector_id": new_connector(c, share)}
    if key == "DELETE /shares/{id}/invitations/{inv_id}":
        return {"id": share, "inv_id": new_invitation(c, share)}
    if key == "DELETE /shares/{id}/members/{principal_id}":
        return {"id": share, "principal_id": _fresh_member()}
    if key in ("POST /users/me/invitations/{id}/accept", "POST /users/me/invitations/{id}/decline"):
        return {"id": _fresh_invitation_to_me()}
    return {}


# Operations that destroy or consume their target (see _fresh).
DESTRUCTIVE = {
    "DELETE /shares/{id}", "POST /permissions/ownership/{resource_type}/{id}/transfer",
    "DELETE /folders/{id}", "DELETE /files/{id}", "DELETE /uploads/{id}", "POST /uploads/{id}/complete",
    "DELETE /external/links/{id}", "DELETE /admin/groups/{group_id}",
    "DELETE /admin/groups/{group_id}/members/{user_id}", "DELETE /admin/webhooks/{webhook_id}",
    "DELETE /smb-connectors/{connector_id}", "DELETE /shares/{id}/invitations/{inv_id}", "DELETE /shares/{id}/members/{principal_id}",
    "POST /users/me/invitations/{id}/accept", "POST /users/me/invitations/{id}/decline",
}


# require_email links the one-time-code requests take turns over (see seeding).
CODE_LINKS = 24
_code_turn = itertools.count()
_code_turn_lock = threading.Lock()


def _fixed(key: str, name: str, params: dict) -> str | None:
    """The seeded value of path parameter `name` of an operation."""
    fx = fixtures()
    ids = _ids_for(fx, key)
    if name == "id" and "resource_type" in params:
        return ids.get(TYPE_PREFIX.get(params["resource_type"], ""))
    if key.startswith(("GET /quotas/shares/", "PUT /quotas/shares/")):
        return fx["quota_share"]
    if key == "POST /shares/{id}/restore":
        return fx["trashed_share"]
    if name == "principal_id":
        return fx["member"]
    if name == "partner_id":
        return ids["prt"]
    if name == "device_id":
        return fx["device"]
    if name == "delivery_id":
        return fx["delivery"]
    if key == "POST /public/links/{token}/email-code" and name == "token":
        with _code_turn_lock:
            turn = next(_code_turn)
        return fx["code_links"][turn % len(fx["code_links"])]
    if name in ("token", "short_code"):
        kind = "upload" if key.endswith("/upload") else "folder" if key.endswith("/children") else "file"
        return fx["links"][kind].get(name)
    return None


def _ids_for(fx: dict, key: str) -> dict:
    """The seeded id per type prefix that operation `key` is pointed at."""
    ids = dict(fx["ids"])
    for part, over in fx.get("ids_for", {}).items():
        if part in key:
            ids.update(over)
    return ids


def _swap(value, ids: dict, device: str, stateful: bool, rtype: str | None = None):
    """A well-formed id is replaced by the seeded id of its type (of `rtype`,
    for a resource_id beside a resource_type). The stateful phase keeps the
    ids the server answered (its links carry them), except seeded ones the
    operation has ids of its own for."""
    if isinstance(value, str):
        m = ID.match(value)
        keep = stateful and not _is_new(value) and (value not in _protected() or value in ids.values())
        if m and not keep:
            prefix = TYPE_PREFIX.get(rtype or "", m.group(1))
            return ids.get(prefix) or value
        return value
    if isinstance(value, list):
        return [_swap(v, ids, device, stateful) for v in value]
    if isinstance(value, dict):
        rt = value.get("resource_type") if isinstance(value.get("resource_type"), str) else None
        out = {}
        for k, v in value.items():
            if k == "device_id" and isinstance(v, str) and 0 < len(v) <= 128 and v.isprintable():
                out[k] = device
            elif k == "resource_id" and rt in TYPE_PREFIX:
                out[k] = _swap(v, ids, device, stateful, rt)
            else:
                out[k] = _swap(v, ids, device, stateful)
        return out
    return value


# Fuzzed tenant rate limits are raised to at least this many units a
# minute: a limit of a request or two would turn the rest of the pass into
# 429s. Invalid values (0, negatives, strings) still go out as generated.
RATE_LIMIT_FLOOR = 1_000_000


def _keep_rate_limits(body) -> None:
    limits = body.get("settings") if isinstance(body, dict) else None
    limits = limits.get("rate_limits") if isinstance(limits, dict) else None
    if not isinstance(limits, dict):
        return
    for k, v in limits.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool) and 1 <= v < RATE_LIMIT_FLOOR:
            limits[k] = RATE_LIMIT_FLOOR


def _sign(case, kwargs: dict, fx: dict) -> None:
    """Signs a ScaiKey delivery the way ScaiKey does, so it reaches the
    handler; the coverage phase's cases without the header stay unsigned
    (they test the 401)."""
    headers = dict(case.headers or {})
    name = next((h for h in headers if h.lower() == "x-scaikey-signature"), None)
    if name is None and _phase(case) == "coverage":
        return
    if not isinstance(case.body, (dict, list, str, int, float, bool)):
        return
    name = name or "X-ScaiKey-Signature"
    raw = json.dumps(case.body).encode()
    headers[name] = hmac.new(fx["scaikey_secret"].encode(), raw, hashlib.sha256).hexdigest()
    case.headers = headers
    kwargs["data"] = raw


def _protected() -> set:
    """Seeded resources the stateful phase must not delete or alter."""
    fx = fixtures()
    if "_protected" not in fx:
        fx["_protected"] = {v for v in ANY_ID.findall(json.dumps({k: v for k, v in fx.items() if k != "patterns"}))}
        fx["_protected"] |= set(fx["public_link_ids"])
    return fx["_protected"]


def _phase(case) -> str:
    meta = getattr(case, "_meta", None)
    try:
        return meta.phase.name.value
    except AttributeError:
        return ""


# Ids the server has answered (seeded or created during the run): they are
# sent as they are, so what the stateful phase's links carry (a resource it
# created, or just deleted) reaches the server unchanged.
KNOWN: set[str] = set()
ANY_ID = re.compile(r"\b[a-z]{3}_[0-7][0-9A-HJKMNP-TV-Z]{25}\b")


def _is_new(value: str) -> bool:
    return value not in KNOWN


try:
    import ast

    import schemathesis

    # CPython 3.11's parser is not safe to enter from two threads at once
    # ("AST constructor recursion depth mismatch"), and hypothesis parses
    # lambdas' source to describe strategies; the two workers take turns.
    _parse, _parse_lock = ast.parse, threading.Lock()

    def _serial_parse(*args, **kwargs):
        with _parse_lock:
            return _parse(*args, **kwargs)

    ast.parse = _serial_parse

    @schemathesis.hook
    def before_call(context, case, kwargs):
        key = op_key(case.operation.method, case.operation.path)
        if key == "PATCH /admin/tenant":
            _keep_rate_limits(case.body)
        fx = fixtures()
        if not KNOWN:
            KNOWN.update(ANY_ID.findall(json.dumps(fx)))
        stateful = _phase(case) == "stateful"
        ids = _ids_for(fx, key)
        params = dict(case.path_parameters or {})
        protected = _protected()
        patterns = fx.get("patterns", {}).get(key, {})
        fresh = None
        for name, value in params.items():
            if name in ("n", "index"):
                # The seeded file has versions 1 and 2; the session one chunk.
                if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                    params[name] = 1 if name == "n" else 0
                continue
            pattern = patterns.get(name)
            valid = isinstance(value, str) and value != "" and (pattern is None or re.search(pattern, value))
            if name == "resource_type" or not valid:
                continue
            # A seeded resource may come back through the stateful phase's
            # links or the fuzzer's pool of ids it has seen: a destructive
            # call then gets a fresh target instead, and the fuzzer's own
            # accounts and the recipients' links are never changed.
            new_id = _is_new(value) or not stateful
            if key in DESTRUCTIVE and (value in protected or new_id):
                if fresh is None:
                    try:
                        fresh = _fresh(key, params)
                    except (RuntimeError, requests.RequestException) as e:
                        # Reported by the coverage table as this operation's 404s.
                        print(f"fuzz_support: no fresh target for {key}: {e}", file=sys.stderr)
                        fresh = {}
                position = getattr(_CLIENT.local, "position", None)
                if fresh and position:
                    # The fuzzed call must see the target just made for it.
                    case.headers = {**(case.headers or {}), "X-ScaiDrive-Position": position}
                params[name] = fresh.get(name) or _fixed(key, name, params) or _swap(value, ids, fx["device"], False)
            elif value in fx["public_link_ids"]:
                params[name] = ids["lnk"]
            elif value in fx["accounts"] and "/users/{" in key:
                params[name] = ids["usr"]
            elif new_id or (value in protected and value not in ids.values()):
                params[name] = _fixed(key, name, params) or _swap(value, ids, fx["device"], False)
        if params:
            case.path_parameters = params
        if case.query:
            case.query = _swap(dict(case.query), ids, fx["device"], stateful)
        if key == "POST /webhooks/scaikey":
            # Directory ids are ScaiKey's, not ours; the delivery is signed as sent.
            _sign(case, kwargs, fx)
        elif isinstance(case.body, (dict, list)) and key != "POST /sync/devices":
            # Registering a device takes a new id; everything else names one.
            case.body = _swap(case.body, ids, fx["device"], stateful)

    @schemathesis.hook
    def after_call(context, case, response):
        try:
            KNOWN.update(ANY_ID.findall(response.text))
        except (AttributeError, UnicodeDecodeError, ValueError):
            pass

except ImportError:  # seeding and the coverage report run without it
    pass


# ------------------------------------------------------------------ coverage
# Operations that cannot have an existing resource behind most of their
# calls, each with the reason; they are reported but do not fail the run.
MOSTLY_404_ALLOWED: dict[str, str] = {}


def coverage(fixtures_path: str, *paths: str) -> int:
    with open(fixtures_path) as f:
        documented = set(json.load(f)["operations"])
    calls: dict[str, Counter] = defaultdict(Counter)
    for path in paths:
        with open(path) as f:
            for line in f:
                ev = json.loads(line)
                for label, status in _interactions(ev):
                    # Undocumented methods (unsupported_method probes) are not operations.
                    if op_key(*label.split(" ", 1)) in documented:
                        calls[label][status] += 1
    bad = []
    print(f"{'operation':66} {'calls':>6}  2xx  3xx  4xx  5xx  404  429")
    for label in sorted(calls, key=lambda l: (l.split(" ", 1)[1], l)):
        st = calls[label]
        n = sum(st.values())
        cls = Counter()
        for code, k in st.items():
            cls[code // 100] += k
        wall = st[404] + st[429]
        flag = ""
        if wall * 2 > n:
            if label in MOSTLY_404_ALLOWED:
                flag = "  (mostly 404/429, allowed: " + MOSTLY_404_ALLOWED[label] + ")"
            else:
                flag = "  <-- mostly 404/429"
                bad.append(label)
        print(f"{label:66} {n:6} {cls[2]:4} {cls[3]:4} {cls[4]:4} {cls[5]:4} {st[404]:4} {st[429]:4}{flag}")
    print(f"{len(calls)} operations, {sum(sum(s.values()) for s in calls.values())} calls")
    if bad:
        print(f"{len(bad)} operations answered mostly 404/429: " + ", ".join(bad))
        return 1
    return 0


def _interactions(ev: dict):
    """(operation, status) of every call a ScenarioFinished event records."""
    recorder = ev.get("ScenarioFinished", {}).get("recorder", {})
    cases = recorder.get("cases", {})
    for case_id, it in recorder.get("interactions", {}).items():
        case = cases.get(case_id, {}).get("value", {})
        response = it.get("response") or {}
        if case.get("method") and response.get("status_code") is not None:
            yield f"{case['method'].upper()} {case['path']}", response["status_code"]


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "seed":
        seed(*args)
    elif cmd == "coverage":
        sys.exit(coverage(*args))
    else:
        sys.exit(f"unknown command {cmd}")
