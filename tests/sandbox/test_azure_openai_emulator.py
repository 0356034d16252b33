"""The Azure OpenAI emulator speaks ARM and the data plane the way Azure does (provider-apis.md 4, 7.4).

Keys, tokens and subscription ids are generated at run time.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from cauterize.sandbox.azure_openai import AzureOpenAIEmulator, new_key_value
from cauterize.sandbox.server import serve

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
VERSION = {"api-version": "2025-09-01"}
PROVIDER = "providers/Microsoft.CognitiveServices/accounts"


@pytest.fixture
def emulator() -> AzureOpenAIEmulator:
    return AzureOpenAIEmulator(now=lambda: NOW, page_size=10)


@pytest.fixture
def sub() -> str:
    return str(uuid.uuid4())


@pytest.fixture
def arm(emulator):
    """A client on the ARM face, with a valid token, at Azure's real base URL."""
    headers = {"Authorization": f"Bearer {emulator.add_admin_token()}"}
    with httpx.Client(
        transport=httpx.MockTransport(emulator), base_url="https://management.azure.com", headers=headers
    ) as client:
        yield client


@pytest.fixture
def data(emulator):
    """A client on the data plane (any host: the emulator picks the account by the key)."""
    with httpx.Client(transport=httpx.MockTransport(emulator), base_url="https://contoso.openai.azure.com") as client:
        yield client


def account_path(sub: str, group: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}/{PROVIDER}/{name}"


def models(client: httpx.Client, value: str) -> httpx.Response:
    return client.get("/openai/models", params={"api-version": "2024-10-21"}, headers={"api-key": value})


@pytest.mark.parametrize(
    ("key_format", "shape"), [("legacy", r"[0-9a-f]{32}"), ("extended", r"[A-Za-z0-9]{52}JQQJ99[A-Za-z0-9]{22}ACOG")]
)
def test_keys_are_generated_in_both_formats(key_format, shape, sub):
    emulator = AzureOpenAIEmulator(key_format=key_format)
    key1, key2 = emulator.add_account(sub, "rg", "acct-a")
    assert re.fullmatch(shape, key1) and re.fullmatch(shape, key2) and key1 != key2
    assert re.fullmatch(shape, new_key_value(key_format))


def test_list_keys_and_the_data_plane_record_which_account_matched(emulator, arm, data, sub):
    emulator.add_account(sub, "rg", "acct-a")
    key1, key2 = emulator.add_account(sub, "rg", "acct-b")

    listed = arm.post(account_path(sub, "rg", "acct-b") + "/listKeys", params=VERSION)
    answer = models(data, key2)

    assert listed.status_code == 200 and listed.json() == {"key1": key1, "key2": key2}
    assert listed.headers["x-ms-ratelimit-remaining-subscription-writes"].isdigit()
    assert answer.status_code == 200 and answer.json()["object"] == "list" and answer.json()["data"]
    assert emulator.calls("GET", "/openai/models")[-1].account == "acct-b"


def test_regenerate_replaces_exactly_one_slot_and_the_old_value_fails(emulator, arm, data, sub):
    key1, key2 = emulator.add_account(sub, "rg", "acct")

    answer = arm.post(account_path(sub, "rg", "acct") + "/regenerateKey", params=VERSION, json={"keyName": "Key1"})

    pair = answer.json()
    assert answer.status_code == 200 and pair["key1"] != key1 and pair["key2"] == key2
    refused = models(data, key1)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "401"
    assert refused.json()["error"]["message"].startswith("Access denied due to invalid subscription key")
    assert models(data, pair["key1"]).status_code == 200 and models(data, key2).status_code == 200
    assert [e["operationName"]["value"] for e in emulator.activity_log] == [
        "Microsoft.CognitiveServices/accounts/regenerateKey/action"
    ]


def test_regenerate_refuses_an_unknown_slot(emulator, arm, sub):
    emulator.add_account(sub, "rg", "acct")
    answer = arm.post(account_path(sub, "rg", "acct") + "/regenerateKey", params=VERSION, json={"keyName": "Key3"})
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "InvalidRequestContent"


def test_api_version_is_required(emulator, arm, sub):
    emulator.add_account(sub, "rg", "acct")
    answer = arm.post(account_path(sub, "rg", "acct") + "/listKeys")
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "MissingApiVersionParameter"


def test_the_bearer_token_is_checked(emulator, sub):
    emulator.add_account(sub, "rg", "acct")
    path = account_path(sub, "rg", "acct") + "/listKeys"
    with httpx.Client(transport=httpx.MockTransport(emulator), base_url="https://management.azure.com") as client:
        missing = client.post(path, params=VERSION)
        wrong = client.post(path, params=VERSION, headers={"Authorization": "Bearer not-a-token"})
        reader = emulator.add_admin_token(actions={"Microsoft.CognitiveServices/accounts/read"})
        denied = client.post(path, params=VERSION, headers={"Authorization": f"Bearer {reader}"})
        allowed = client.get(
            account_path(sub, "rg", "acct"), params=VERSION, headers={"Authorization": f"Bearer {reader}"}
        )
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "AuthenticationFailed")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (401, "InvalidAuthenticationToken")
    assert (denied.status_code, denied.json()["error"]["code"]) == (403, "AuthorizationFailed")
    assert "Microsoft.CognitiveServices/accounts/listKeys/action" in denied.json()["error"]["message"]
    assert allowed.status_code == 200


def test_missing_resources_answer_404_with_arm_codes(emulator, arm, sub):
    emulator.add_account(sub, "rg", "acct")
    gone = arm.post(account_path(sub, "rg", "other") + "/listKeys", params=VERSION)
    no_group = arm.post(account_path(sub, "nope", "acct") + "/listKeys", params=VERSION)
    no_sub = arm.get(f"/subscriptions/{uuid.uuid4()}/{PROVIDER}", params=VERSION)
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "ResourceNotFound")
    assert (no_group.status_code, no_group.json()["error"]["code"]) == (404, "ResourceGroupNotFound")
    assert (no_sub.status_code, no_sub.json()["error"]["code"]) == (404, "SubscriptionNotFound")


def test_account_lists_page_with_an_absolute_next_link(emulator, arm, sub):
    names = [f"acct-{index:02}" for index in range(23)]
    for index, name in enumerate(names):
        emulator.add_account(sub, f"rg-{index % 2}", name)
    emulator.add_account(str(uuid.uuid4()), "rg-0", "elsewhere")

    seen, url, pages = [], f"/subscriptions/{sub}/{PROVIDER}", 0
    while url:
        page = arm.get(url, params=VERSION if pages == 0 else None).json()
        seen += [account["name"] for account in page["value"]]
        url, pages = page.get("nextLink"), pages + 1
        assert url is None or (url.startswith("https://management.azure.com/") and "api-version=" in url)

    assert seen == names and pages == 3
    in_group = arm.get(f"/subscriptions/{sub}/resourceGroups/rg-1/{PROVIDER}", params=VERSION).json()
    assert [a["name"] for a in in_group["value"]] == names[1::2][:10] and "resourceGroups/rg-1" in in_group["nextLink"]
    assert in_group["value"][0]["properties"]["endpoint"] == "https://acct-01.openai.azure.com/"


def test_arm_paths_are_case_insensitive(emulator, arm, sub):
    key1, _ = emulator.add_account(sub, "RG-Prod", "acct")
    answer = arm.post(f"/subscriptions/{sub}/resourcegroups/rg-prod/{PROVIDER.lower()}/ACCT/listkeys", params=VERSION)
    assert answer.status_code == 200 and answer.json()["key1"] == key1


def test_disable_local_auth_turns_every_key_off(emulator, arm, data, sub):
    key1, key2 = emulator.add_account(sub, "rg", "acct")
    path = account_path(sub, "rg", "acct")

    patched = arm.patch(path, params=VERSION, json={"properties": {"disableLocalAuth": True}})

    assert patched.status_code == 200 and patched.json()["properties"]["disableLocalAuth"] is True
    assert arm.get(path, params=VERSION).json()["properties"]["disableLocalAuth"] is True
    refused = models(data, key2)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "AuthenticationTypeDisabled")
    assert arm.post(path + "/listKeys", params=VERSION).status_code == 400
    assert not emulator.is_live(key1) and not emulator.is_live(key2)


def test_data_plane_needs_a_key_and_an_api_version(emulator, data, sub):
    key1, _ = emulator.add_account(sub, "rg", "acct")
    assert data.get("/openai/models", params={"api-version": "2024-10-21"}).status_code == 401
    assert data.get("/openai/models", headers={"api-key": key1}).status_code == 404
    assert models(data, new_key_value()).status_code == 401


@pytest.mark.parametrize("path", ["/openai/models", "/openai/deployments", "/openai/v1/models"])
def test_a_retired_api_version_is_refused_as_azure_refuses_it(emulator, data, sub, path):
    key1, _ = emulator.add_account(sub, "rg", "acct")
    refused = data.get(path, params={"api-version": "2023-03-15-preview"}, headers={"api-key": key1})
    assert refused.status_code == 400
    assert refused.json() == {"error": {"code": "BadRequest", "message": "API version not supported"}}


def test_models_list_ga_and_v1(emulator, data, sub):
    key1, _ = emulator.add_account(sub, "rg", "acct", deployments=("gpt-4o-mini", "my-ft"))
    ga, v1 = models(data, key1), data.get("/openai/v1/models", headers={"api-key": key1})
    for answer in (ga, v1):
        assert answer.status_code == 200 and answer.json()["object"] == "list"
        assert {m["id"] for m in answer.json()["data"]} >= {"gpt-4o-mini", "my-ft"}
        assert all(m["object"] == "model" for m in answer.json()["data"])
    assert data.get("/openai/v1/models", params={"api-version": "preview"}, headers={"api-key": key1}).status_code == 200
    gone = data.get("/openai/deployments", params={"api-version": "2024-10-21"}, headers={"api-key": key1})
    assert gone.status_code == 404 and gone.json()["error"] == {"code": "404", "message": "Resource not found"}
    assert data.get("/openai/v1/models", headers={"api-key": new_key_value()}).status_code == 401


def test_injected_429_carries_retry_after_and_the_write_budget(emulator, arm, sub):
    emulator.add_account(sub, "rg", "acct")
    emulator.fail_next("POST", "*/regenerateKey", status=429, retry_after=7)
    path = account_path(sub, "rg", "acct") + "/regenerateKey"

    throttled = arm.post(path, params=VERSION, json={"keyName": "Key2"})
    retried = arm.post(path, params=VERSION, json={"keyName": "Key2"})

    assert throttled.status_code == 429 and throttled.headers["retry-after"] == "7"
    assert throttled.headers["x-ms-ratelimit-remaining-subscription-writes"] == "0"
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert retried.status_code == 200 and len(emulator.activity_log) == 1


def test_metrics_are_per_account_series_without_a_key_dimension(emulator, arm, sub):
    emulator.add_account(sub, "rg", "acct")
    emulator.add_account(sub, "rg", "other")
    start = NOW - timedelta(hours=3)
    emulator.add_metrics("acct", start, NOW, 1800, prompt_tokens=100, generated_tokens=10, requests=2)
    emulator.add_metrics("other", start, NOW, 1800, prompt_tokens=9999, generated_tokens=9999, requests=99)

    answer = arm.get(
        account_path(sub, "rg", "acct") + "/providers/Microsoft.Insights/metrics",
        params={
            "api-version": "2023-10-01",
            "metricnames": "ProcessedPromptTokens,GeneratedTokens,AzureOpenAIRequests",
            "timespan": f"{start:%Y-%m-%dT%H:%M:%SZ}/{NOW:%Y-%m-%dT%H:%M:%SZ}",
            "interval": "PT1H",
            "aggregation": "Total",
        },
    ).json()

    by_name = {metric["name"]["value"]: metric for metric in answer["value"]}
    assert list(by_name) == ["ProcessedPromptTokens", "GeneratedTokens", "AzureOpenAIRequests"]
    for metric in by_name.values():
        (series,) = metric["timeseries"]
        assert series["metadatavalues"] == []  # no dimension at all, and certainly no key
    points = by_name["ProcessedPromptTokens"]["timeseries"][0]["data"]
    assert [p["timeStamp"] for p in points] == ["2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z", "2026-03-01T11:00:00Z"]
    assert [p["total"] for p in points] == [200.0, 200.0, 200.0]
    assert sum(p["total"] for p in by_name["AzureOpenAIRequests"]["timeseries"][0]["data"]) == 12.0


def test_unknown_metric_is_a_bad_request(emulator, arm, sub):
    emulator.add_account(sub, "rg", "acct")
    answer = arm.get(
        account_path(sub, "rg", "acct") + "/providers/Microsoft.Insights/metrics",
        params={"api-version": "2023-10-01", "metricnames": "TokensPerKey"},
    )
    assert answer.status_code == 400 and "TokensPerKey" in answer.json()["error"]["message"]


def test_both_faces_over_a_real_socket(emulator, sub):
    token = emulator.add_admin_token()
    for index in range(12):
        emulator.add_account(sub, "rg", f"acct-{index:02}")
    key1 = emulator.accounts["acct-11"].key1

    with serve(emulator) as app, httpx.Client(base_url=app.url) as client:
        auth = {"Authorization": f"Bearer {token}"}
        first = client.get(f"/subscriptions/{sub}/{PROVIDER}", params=VERSION, headers=auth).json()
        second = client.get(first["nextLink"], headers=auth).json()
        pair = client.post(
            account_path(sub, "rg", "acct-11") + "/regenerateKey",
            params=VERSION,
            json={"keyName": "Key1"},
            headers=auth,
        ).json()
        old, new = models(client, key1), models(client, pair["key1"])

    assert first["nextLink"].startswith(app.url + "/subscriptions/")
    assert len(first["value"]) + len(second["value"]) == 12 and "nextLink" not in second
    assert (old.status_code, new.status_code) == (401, 200)
    assert emulator.calls("GET", "/openai/models")[-1].account == "acct-11"
