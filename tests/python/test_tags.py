"""Tags through the official SDKs, single-resource and batch forms, in every signing mode."""

import json

from test_sdk import create_key, fails


def batch(kms, action, ids, tags=None, tag_keys=None, **extra):
    """The batch tag actions take repeat lists, which each SDK models its own way."""
    if kms.mode == "legacy":
        params = {"ResourceIds": ids, "ResourceType": "key", **extra}
        if tags is not None:
            params["Tags"] = [{"Key": k, "Value": v} for k, v in tags]
        if tag_keys is not None:
            params["TagKeys"] = tag_keys
    else:
        from alibabacloud_kms20160120 import models
        params = {"RegionId": "cn-hangzhou", "ResourceType": "key", **extra}
        if ids:
            params["ResourceId"] = ids
        model = getattr(models, f"{action}RequestTag", None)
        if tags is not None:
            params["Tag"] = [model(key=k, value=v) for k, v in tags]
        if tag_keys is not None:
            params["TagKey"] = tag_keys
    return kms(action, **params)


def tags_of(kms, key):
    return {t["TagKey"]: t["TagValue"] for t in kms("ListResourceTags", KeyId=key)["Tags"]["Tag"]}


def test_single_resource_tags(kms):
    key = create_key(kms, Tags=json.dumps([{"TagKey": "env", "TagValue": "prod"}]))["KeyId"]
    assert tags_of(kms, key) == {"env": "prod"}
    kms("TagResource", KeyId=key, Tags=json.dumps([{"TagKey": "team", "TagValue": "a"}, {"TagKey": "env", "TagValue": "dev"}]))
    assert tags_of(kms, key) == {"env": "dev", "team": "a"}
    entries = kms("ListResourceTags", KeyId=key)["Tags"]["Tag"]
    assert all(e["KeyId"] == key for e in entries)
    kms("UntagResource", KeyId=key, TagKeys=json.dumps(["team"]))
    assert tags_of(kms, key) == {"env": "dev"}
    kms("UntagResource", KeyId=key, TagKeys="env")
    assert tags_of(kms, key) == {}
    many = [{"TagKey": f"k{i}", "TagValue": "v"} for i in range(21)]
    fails("InvalidParameter", 400, kms, "TagResource", KeyId=key, Tags=json.dumps(many))
    fails("InvalidParameter", 400, kms, "TagResource", KeyId=key, Tags=json.dumps([{"TagKey": "acs:x", "TagValue": "v"}]))
    fails("InvalidParameter", 400, kms, "TagResource", KeyId=key, Tags="not json")
    fails("Forbidden.KeyNotFound", 404, kms, "TagResource", KeyId="key-nope", Tags=json.dumps(many[:1]))
    fails("Forbidden.ResourceNotFound", 404, kms, "TagResource", SecretName="no-such-secret", Tags=json.dumps(many[:1]))


def test_batch_tags_and_filters(fresh_server):
    from conftest import MODES, sdk
    for mode in MODES:
        kms = sdk(mode, fresh_server)
        a, b, c = (create_key(kms)["KeyId"] for _ in range(3))
        batch(kms, "TagResources", [a, b], tags=[("project", mode), ("tier", "gold")])
        assert tags_of(kms, a) == tags_of(kms, b) == {"project": mode, "tier": "gold"}
        assert tags_of(kms, c) == {}
        listed = batch(kms, "ListTagResources", [a])["TagResources"]["TagResource"]
        assert sorted((t["ResourceId"], t["TagKey"], t["TagValue"]) for t in listed) == \
            [(a, "project", mode), (a, "tier", "gold")]
        by_tag = batch(kms, "ListTagResources", [], tags=[("project", mode)])["TagResources"]["TagResource"]
        assert sorted(t["ResourceId"] for t in by_tag) == sorted([a, b])
        filtered = kms("ListKeys", PageSize=100, Filters=json.dumps([
            {"Key": "TagKey", "Values": ["project"]}, {"Key": "TagValue", "Values": [mode]}]))
        assert sorted(k["KeyId"] for k in filtered["Keys"]["Key"]) == sorted([a, b])
        batch(kms, "UntagResources", [a], tag_keys=["tier"])
        assert tags_of(kms, a) == {"project": mode}
        batch(kms, "UntagResources", [a, b], All=True)
        assert tags_of(kms, a) == tags_of(kms, b) == {}
        fails("Forbidden.KeyNotFound", 404, batch, kms, "TagResources", [a, "key-missing"], tags=[("x", "y")])
        assert tags_of(kms, a) == {}, "nothing was tagged when one resource was missing"
