"""The Google emulator on the wire: IAM keys, the token endpoint, Monitoring, Org Policy, API Keys, auth and faults.

JWTs are signed here with ``cryptography`` directly (not with the provider's helpers), so the
emulator's verification is checked independently. Every key is generated at run time.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cauterize.sandbox.google import AUTHN_METRIC, GENERATIVE, GoogleEmulator, project_number
from cauterize.sandbox.server import serve

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TOKEN_URL = "https://oauth2.googleapis.com/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
PROJECT = "vertex-prod"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_jwt(credentials: str, *, now: datetime = NOW, key: rsa.RSAPrivateKey | None = None, **changes) -> str:
    """A JWT-bearer assertion for a key file; ``changes`` override header (``kid``) or claims."""
    info = json.loads(credentials)
    private = key or serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    header = {"alg": "RS256", "typ": "JWT", "kid": changes.pop("kid", info["private_key_id"])}
    issued = int(now.timestamp())
    claims = {
        "iss": info["client_email"],
        "scope": "https://www.googleapis.com/auth/cloud-platform",
        "aud": TOKEN_URL,
        "iat": issued,
        "exp": issued + 3600,
        **changes,
    }
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64(signature)}"


@pytest.fixture
def google() -> GoogleEmulator:
    return GoogleEmulator(now=lambda: NOW)


@pytest.fixture
def api(google):
    """A client at Google's real hosts, authenticated as an admin (paths are absolute per service)."""
    token = google.add_admin_token()
    with httpx.Client(transport=httpx.MockTransport(google), headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@pytest.fixture
def account(google) -> str:
    return google.add_service_account(PROJECT, "vertex-caller")


def iam(path: str) -> str:
    return f"https://iam.googleapis.com/v1/{path}"


def exchange(client: httpx.Client, assertion: str, grant: str = JWT_BEARER) -> httpx.Response:
    return client.post(TOKEN_URL, data={"grant_type": grant, "assertion": assertion})


def test_keys_list_get_and_key_types(google, api, account):
    key_id, _ = google.add_key(PROJECT, account)
    every = api.get(iam(f"projects/{PROJECT}/serviceAccounts/{account}/keys")).json()["keys"]
    assert sorted(k["keyType"] for k in every) == ["SYSTEM_MANAGED", "USER_MANAGED"]
    (user,) = api.get(iam(f"projects/-/serviceAccounts/{account}/keys?keyTypes=USER_MANAGED")).json()["keys"]
    assert user == {
        "name": f"projects/{PROJECT}/serviceAccounts/{account}/keys/{key_id}",
        "validAfterTime": "2026-03-01T12:00:00Z",
        "validBeforeTime": "9999-12-31T23:59:59Z",
        "keyAlgorithm": "KEY_ALG_RSA_2048",
        "keyOrigin": "GOOGLE_PROVIDED",
        "keyType": "USER_MANAGED",
    }  # no "disabled": false, as in Google's proto3 JSON
    unique_id = google.accounts[account].unique_id
    assert api.get(iam(f"projects/-/serviceAccounts/{unique_id}/keys/{key_id}")).json() == user
    kinds = "keyTypes=USER_MANAGED&keyTypes[]=SYSTEM_MANAGED"
    both = api.get(iam(f"projects/{PROJECT}/serviceAccounts/{account}/keys?{kinds}"))
    assert len(both.json()["keys"]) == 2
    bad = api.get(iam(f"projects/{PROJECT}/serviceAccounts/{account}/keys?keyTypes=ROBOT"))
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_disable_enable_delete_and_the_token_endpoint(google, api, account):
    key_id, credentials = google.add_key(PROJECT, account)
    name = f"projects/{PROJECT}/serviceAccounts/{account}/keys/{key_id}"
    assert exchange(api, signed_jwt(credentials)).status_code == 200

    assert api.post(iam(f"{name}:disable"), json={}).json() == {}
    assert api.get(iam(name)).json()["disabled"] is True and not google.is_live(credentials)
    refused = exchange(api, signed_jwt(credentials))
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_grant"

    assert api.post(iam(f"{name}:enable")).json() == {}
    assert "disabled" not in api.get(iam(name)).json() and google.is_live(credentials)

    assert api.delete(iam(name)).json() == {}
    assert exchange(api, signed_jwt(credentials)).json()["error"] == "invalid_grant"
    missing = api.get(iam(name))
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "code": 404,
        "message": f"Service account key {key_id} does not exist.",
        "status": "NOT_FOUND",
        "details": [],
    }
    # the wildcard turns "not found" into 403, as Google's does
    wildcard = api.delete(iam(f"projects/-/serviceAccounts/{account}/keys/{key_id}"))
    assert wildcard.status_code == 403 and wildcard.json()["error"]["status"] == "PERMISSION_DENIED"
    assert api.get(iam(f"projects/{PROJECT}/serviceAccounts/nobody@x.iam.gserviceaccount.com/keys")).status_code == 404


def test_create_returns_a_key_file_for_the_new_key(google, api, account):
    created = api.post(
        iam(f"projects/-/serviceAccounts/{account}/keys"),
        json={"privateKeyType": "TYPE_GOOGLE_CREDENTIALS_FILE", "keyAlgorithm": "KEY_ALG_RSA_2048"},
    ).json()
    info = json.loads(base64.b64decode(created["privateKeyData"]))
    assert created["name"].endswith(f"/keys/{info['private_key_id']}")
    assert created["privateKeyType"] == "TYPE_GOOGLE_CREDENTIALS_FILE" and created["keyType"] == "USER_MANAGED"
    assert (info["type"], info["client_email"], info["project_id"]) == ("service_account", account, PROJECT)
    private = serialization.load_pem_private_key(info["private_key"].encode(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey)
    text = base64.b64decode(created["privateKeyData"]).decode()
    assert exchange(api, signed_jwt(text)).status_code == 200 and google.is_live(text)


def test_a_service_account_holds_at_most_ten_keys(google, api, account):
    for _ in range(10):
        assert api.post(iam(f"projects/{PROJECT}/serviceAccounts/{account}/keys"), json={}).status_code == 200
    full = api.post(iam(f"projects/{PROJECT}/serviceAccounts/{account}/keys"), json={})
    # Google's bare answer (firebase/firebase-tools#6192): no details say why
    assert full.status_code == 400
    assert full.json()["error"] == {
        "code": 400, "message": "Precondition check failed.", "status": "FAILED_PRECONDITION", "details": []
    }


@pytest.mark.parametrize("managed", [False, True])
def test_an_org_policy_forbids_key_creation_with_googles_documented_answer(google, api, account, managed):
    constraint = "iam.managed.disableServiceAccountKeyCreation" if managed else "iam.disableServiceAccountKeyCreation"
    policy = f"https://orgpolicy.googleapis.com/v2/projects/{PROJECT}/policies/{constraint}:getEffectivePolicy"
    assert api.get(policy).json() == {"name": f"projects/{project_number(PROJECT)}/policies/{constraint}"}

    google.forbid_key_creation(PROJECT, managed=managed)

    assert api.get(policy).json()["spec"] == {"rules": [{"enforce": True}]}
    refused = api.post(iam(f"projects/{PROJECT}/serviceAccounts/{account}/keys"), json={})
    assert refused.status_code == 400
    # cloud.google.com/iam/docs/troubleshoot-org-policies, "Key creation error", REST
    assert refused.json()["error"] == {
        "code": 400,
        "message": "Key creation is not allowed on this service account.",
        "status": "FAILED_PRECONDITION",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.PreconditionFailure",
                "violations": [
                    {
                        "type": f"constraints/{constraint}",
                        "subject": f"projects/{PROJECT}/serviceAccounts/{account}?configvalue="
                        + account.replace("@", "%40"),
                        "description": "Key creation is not allowed on this service account.",
                    }
                ],
            }
        ],
    }
    google.forbid_key_creation(PROJECT, managed=managed, enforce=False)
    assert api.get(policy).json()["spec"] == {"rules": [{"enforce": False}]}
    assert api.post(iam(f"projects/{PROJECT}/serviceAccounts/{account}/keys"), json={}).status_code == 200


def test_denied_permissions_and_disabled_services(google, api, account):
    keys = iam(f"projects/{PROJECT}/serviceAccounts/{account}/keys")
    google.deny("iam.serviceAccountKeys.create")
    assert api.get(keys).status_code == 200
    denied = api.post(keys, json={}).json()["error"]
    assert (denied["code"], denied["status"]) == (403, "PERMISSION_DENIED")
    assert denied["details"][0]["metadata"] == {"permission": "iam.serviceAccountKeys.create"}
    google.disable_service("orgpolicy.googleapis.com")
    off = api.get(
        f"https://orgpolicy.googleapis.com/v2/projects/{PROJECT}/policies/iam.disableServiceAccountKeyCreation"
        ":getEffectivePolicy"
    ).json()["error"]
    assert off["code"] == 403 and off["details"][0]["reason"] == "SERVICE_DISABLED"
    assert off["details"][0]["metadata"]["service"] == "orgpolicy.googleapis.com"


def test_the_token_endpoint_refuses_bad_assertions(google, api, account):
    _, credentials = google.add_key(PROJECT, account)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cases = {
        "bad signature": signed_jwt(credentials, key=stranger),
        "unknown kid": signed_jwt(credentials, kid="0" * 40),
        "too long": signed_jwt(credentials, exp=int(NOW.timestamp()) + 7200),
        "stale": signed_jwt(credentials, now=NOW - timedelta(hours=2)),
        "audience": signed_jwt(credentials, aud="https://example.com/token"),
        "unknown account": signed_jwt(credentials, iss="ghost@vertex-prod.iam.gserviceaccount.com"),
    }
    for case, assertion in cases.items():
        answer = exchange(api, assertion)
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_grant"), case
    assert "iat and exp" in exchange(api, cases["stale"]).json()["error_description"]
    assert exchange(api, signed_jwt(credentials), grant="password").json()["error"] == "unsupported_grant_type"
    assert exchange(api, "not-a-jwt").json()["error"] == "invalid_request"
    assert exchange(api, signed_jwt(credentials, scope="")).json()["error"] == "invalid_scope"


def test_iam_needs_an_admin_bearer(google, account):
    _, plain = google.add_key(PROJECT, account)
    _, admin_file = google.add_key(PROJECT, google.add_service_account(PROJECT, "key-admin", admin=True))
    path = iam(f"projects/{PROJECT}/serviceAccounts/{account}/keys")
    with httpx.Client(transport=httpx.MockTransport(google)) as client:
        missing = client.get(path)
        assert missing.status_code == 401 and missing.json()["error"]["status"] == "UNAUTHENTICATED"
        assert client.get(path, headers={"Authorization": "Bearer ya29.forged"}).status_code == 401

        user_token = exchange(client, signed_jwt(plain)).json()["access_token"]
        denied = client.get(path, headers={"Authorization": f"Bearer {user_token}"})
        assert denied.status_code == 403
        error = denied.json()["error"]
        assert error["status"] == "PERMISSION_DENIED"
        assert error["details"][0]["metadata"] == {"permission": "iam.serviceAccountKeys.list"}

        admin = exchange(client, signed_jwt(admin_file)).json()
        assert admin["token_type"] == "Bearer" and admin["expires_in"] == 3599
        assert client.get(path, headers={"Authorization": f"Bearer {admin['access_token']}"}).status_code == 200


def test_injected_faults_and_recorded_requests(google, api, account):
    key_id, _ = google.add_key(PROJECT, account)
    name = f"projects/{PROJECT}/serviceAccounts/{account}/keys/{key_id}"
    google.fail_next("POST", "/v1/projects/*/serviceAccounts/*/keys/*:disable", status=429, retry_after=7)
    google.fail_next("POST", "/token", status=503)

    limited = api.post(iam(f"{name}:disable"))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "7"
    assert limited.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert api.post(iam(f"{name}:disable")).status_code == 200
    assert api.post(TOKEN_URL, data={"grant_type": JWT_BEARER}).status_code == 503
    (call,) = google.calls("POST", "/token")
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"
    assert len(google.calls("POST", "*:disable")) == 2


def test_time_series_counts_authentications_per_key(google, api, account):
    key_id, credentials = google.add_key(PROJECT, account)
    other_id, _ = google.add_key(PROJECT, account)
    start = NOW - timedelta(hours=6)
    google.add_authn_events(key_id, start, NOW, 600, 2)  # 36 ten-minute points
    google.add_authn_events(other_id, start, NOW, 600, 50)
    exchange(api, signed_jwt(credentials))  # a token exchange is one more event, in the current minute
    query = {
        "filter": f'metric.type="{AUTHN_METRIC}" AND metric.labels.key_id="{key_id}"',
        "interval.startTime": "2026-03-01T06:00:00Z",
        "interval.endTime": "2026-03-01T12:01:00Z",
        "aggregation.alignmentPeriod": "3600s",
        "aggregation.perSeriesAligner": "ALIGN_SUM",
    }
    url = f"https://monitoring.googleapis.com/v3/projects/{PROJECT}/timeSeries"
    (series,) = api.get(url, params=query).json()["timeSeries"]
    assert series["metric"] == {"type": AUTHN_METRIC, "labels": {"key_id": key_id}}
    assert series["resource"]["type"] == "iam_service_account" and series["metricKind"] == "DELTA"
    points = series["points"]
    assert points[0]["interval"] == {"startTime": "2026-03-01T11:01:00Z", "endTime": "2026-03-01T12:01:00Z"}
    assert [p["value"]["int64Value"] for p in points] == ["13", "12", "12", "12", "12", "12"]  # newest first

    google.page_points = 4
    raw = {k: v for k, v in query.items() if not k.startswith("aggregation.")}
    first = api.get(url, params=raw).json()
    assert len(first["timeSeries"][0]["points"]) == 4 and first["nextPageToken"]
    pages = [first]
    while "nextPageToken" in pages[-1]:
        pages.append(api.get(url, params={**raw, "pageToken": pages[-1]["nextPageToken"]}).json())
    assert sum(int(p["value"]["int64Value"]) for page in pages for p in page["timeSeries"][0]["points"]) == 73

    assert api.get(url, params={**query, "aggregation.perSeriesAligner": "ALIGN_NONE"}).status_code == 400
    assert api.get(url, params={**query, "filter": "metric.type ~ x"}).status_code == 400
    elsewhere = api.get("https://monitoring.googleapis.com/v3/projects/other/timeSeries", params=query)
    assert elsewhere.status_code == 403


def test_over_a_real_socket(google, account):
    _, credentials = google.add_key(PROJECT, account)
    with serve(google) as app, httpx.Client(base_url=app.url) as client:
        answer = client.post("/token", data={"grant_type": JWT_BEARER, "assertion": signed_jwt(credentials)})
        assert answer.status_code == 200 and answer.json()["access_token"].startswith("ya29.")
        local = signed_jwt(credentials, aud=f"{app.url}/token")  # the audience may be the URL actually called
        assert client.post("/token", data={"grant_type": JWT_BEARER, "assertion": local}).status_code == 200
        assert client.get(f"/v1/projects/{PROJECT}/serviceAccounts/{account}/keys").status_code == 401


def test_gemini_models_list_for_api_keys(google):
    value = google.add_api_key(PROJECT)
    with httpx.Client(
        transport=httpx.MockTransport(google), base_url="https://generativelanguage.googleapis.com"
    ) as client:
        listed = client.get("/v1/models", headers={"x-goog-api-key": value})
        assert listed.status_code == 200 and listed.json()["models"][0]["name"].startswith("models/")
        assert client.get("/v1beta/models", params={"key": value}).status_code == 200
        assert google.is_live(value)

        google.delete_api_key(value)
        refused = client.get("/v1/models", headers={"x-goog-api-key": value})
        error = refused.json()["error"]
        assert (refused.status_code, error["status"], error["details"][0]["reason"]) == (
            400,
            "INVALID_ARGUMENT",
            "API_KEY_INVALID",
        )
        assert error["message"] == "API key not valid. Please pass a valid API key." and value not in refused.text
        assert not google.is_live(value)

        blocked = client.get("/v1/models", headers={"x-goog-api-key": google.add_api_key(PROJECT, restriction="ip")})
        assert (blocked.status_code, blocked.json()["error"]["status"]) == (403, "PERMISSION_DENIED")
        assert blocked.json()["error"]["details"][0]["reason"] == "API_KEY_IP_ADDRESS_BLOCKED"
        off = client.get("/v1/models", headers={"x-goog-api-key": google.add_api_key(PROJECT, service_enabled=False)})
        assert (off.status_code, off.json()["error"]["details"][0]["reason"]) == (403, "SERVICE_DISABLED")
        assert client.get("/v1/models").status_code == 403


APIKEYS = "https://apikeys.googleapis.com/v2"


def test_api_keys_lookup_get_list_and_key_string(google, api):
    restrictions = {"apiTargets": [{"service": GENERATIVE}], "browserKeyRestrictions": {"allowedReferrers": ["*"]}}
    value = google.add_api_key(PROJECT, display_name="Gemini web", restrictions=restrictions)
    other = google.add_api_key("elsewhere")
    key = google.find_api_key(value)
    number = project_number(PROJECT)

    found = api.get(f"{APIKEYS}/keys:lookupKey", params={"keyString": value}).json()
    assert found == {"parent": f"projects/{number}", "name": f"projects/{number}/locations/global/keys/{key.uid}"}
    got = api.get(f"{APIKEYS}/{found['name']}").json()
    assert (got["uid"], got["displayName"], got["restrictions"]) == (key.uid, "Gemini web", restrictions)
    assert "keyString" not in got and value not in json.dumps(got) and "deleteTime" not in got
    assert api.get(f"{APIKEYS}/{found['name']}/keyString").json() == {"keyString": value}
    assert api.get(f"{APIKEYS}/projects/{PROJECT}/locations/global/keys/{key.uid}").json()["uid"] == key.uid

    listed = api.get(f"{APIKEYS}/projects/{number}/locations/global/keys").json()["keys"]
    assert [k["uid"] for k in listed] == [key.uid] and google.find_api_key(other).uid not in json.dumps(listed)
    unknown = api.get(f"{APIKEYS}/keys:lookupKey", params={"keyString": value[:-1] + "x"})
    assert unknown.status_code == 404 and value[:-1] not in unknown.text
    assert api.get(f"{APIKEYS}/projects/{number}/locations/us/keys/{key.uid}").status_code == 400


def test_api_keys_delete_is_a_soft_delete_through_an_operation(google, api):
    value = google.add_api_key(PROJECT)
    name = api.get(f"{APIKEYS}/keys:lookupKey", params={"keyString": value}).json()["name"]
    google.operation_polls = 1

    pending = api.delete(f"{APIKEYS}/{name}").json()
    assert pending["done"] is False and pending["name"].startswith("operations/")
    assert api.get(f"{APIKEYS}/{pending['name']}").json() == {"name": pending["name"], "done": False}
    done = api.get(f"{APIKEYS}/{pending['name']}").json()
    assert done["done"] is True and done["response"]["name"] == name and "deleteTime" in done["response"]

    assert api.get(f"{APIKEYS}/{name}").json()["deleteTime"] == "2026-03-01T12:00:00Z"  # still readable
    collection = name.rsplit("/", 1)[0]
    assert "keys" not in api.get(f"{APIKEYS}/{collection}").json()
    assert len(api.get(f"{APIKEYS}/{collection}", params={"showDeleted": "true"}).json()["keys"]) == 1
    assert api.delete(f"{APIKEYS}/{name}").status_code == 404
    with httpx.Client(transport=httpx.MockTransport(google), base_url=f"https://{GENERATIVE}") as gemini:
        refused = gemini.get("/v1/models", headers={"x-goog-api-key": value}).json()["error"]
        assert refused["details"][0]["reason"] == "API_KEY_INVALID"

    google.purge_api_key(value)
    parent = f"projects/{project_number(PROJECT)}"
    assert api.get(f"{APIKEYS}/keys:lookupKey", params={"keyString": value}).json() == {"parent": parent}
    assert api.get(f"{APIKEYS}/{name}").status_code == 404


def test_api_keys_create_through_an_operation_then_key_string(google, api):
    google.add_api_key(PROJECT)
    restrictions = {"apiTargets": [{"service": GENERATIVE, "methods": ["Get*"]}]}
    parent = f"{APIKEYS}/projects/{project_number(PROJECT)}/locations/global"
    operation = api.post(f"{parent}/keys", json={"displayName": "replacement", "restrictions": restrictions}).json()
    assert operation["done"] is True
    created = operation["response"]
    assert created["@type"] == "type.googleapis.com/google.api.apikeys.v2.Key" and "keyString" not in created
    assert (created["displayName"], created["restrictions"]) == ("replacement", restrictions)
    value = api.get(f"{APIKEYS}/{created['name']}/keyString").json()["keyString"]
    assert google.find_api_key(value).restrictions == restrictions and google.is_live(value)
    with httpx.Client(transport=httpx.MockTransport(google), base_url=f"https://{GENERATIVE}") as gemini:
        assert gemini.get("/v1/models", headers={"x-goog-api-key": value}).status_code == 200

    named = api.post(f"{parent}/keys", params={"keyId": "my-key"}, json={}).json()["response"]["name"]
    assert named.endswith("/keys/my-key") and api.get(f"{APIKEYS}/{named}").status_code == 200
    assert api.post(f"{parent}/keys", params={"keyId": "my-key"}, json={}).status_code == 409
    bad = api.post(f"{parent}/keys", json={"restrictions": {"allowEverything": True}})
    assert bad.status_code == 400 and "allowEverything" in bad.json()["error"]["message"]
    assert api.post(f"{parent}/keys", json={"displayName": "x" * 64}).status_code == 400


def test_api_key_restrictions_hold_on_the_gemini_api(google):
    cases = {
        "API_KEY_SERVICE_BLOCKED": {"apiTargets": [{"service": "translate.googleapis.com"}]},
        "API_KEY_HTTP_REFERRER_BLOCKED": {"browserKeyRestrictions": {"allowedReferrers": ["https://a.example/*"]}},
        "API_KEY_IP_ADDRESS_BLOCKED": {"serverKeyRestrictions": {"allowedIps": ["203.0.113.7"]}},
        "API_KEY_ANDROID_APP_BLOCKED": {"androidKeyRestrictions": {"allowedApplications": [{"packageName": "a.b"}]}},
        "API_KEY_IOS_APP_BLOCKED": {"iosKeyRestrictions": {"allowedBundleIds": ["a.b"]}},
    }
    with httpx.Client(transport=httpx.MockTransport(google), base_url=f"https://{GENERATIVE}") as gemini:
        for reason, restrictions in cases.items():
            value = google.add_api_key(PROJECT, restrictions=restrictions)
            error = gemini.get("/v1/models", headers={"x-goog-api-key": value}).json()["error"]
            assert (error["code"], error["details"][0]["reason"]) == (403, reason)


def test_api_keys_calls_need_an_admin_and_their_permission(google, api):
    value = google.add_api_key(PROJECT)
    with httpx.Client(transport=httpx.MockTransport(google)) as anonymous:
        assert anonymous.get(f"{APIKEYS}/keys:lookupKey", params={"keyString": value}).status_code == 401
    google.deny("apikeys.keys.lookup")
    denied = api.get(f"{APIKEYS}/keys:lookupKey", params={"keyString": value}).json()["error"]
    assert denied["details"][0]["metadata"] == {"permission": "apikeys.keys.lookup"} and value not in str(denied)
