"""CURVE: keys from arguments, the environment and the config file are
accepted; a refused, missing or wrong key is an AuthError at once, never a
timeout (the socket monitor sees the failed handshake)."""

import os

import pytest

import ztask
from conftest import scaled

# Long enough that a hang would show as UnreachableError, not AuthError.
TIMEOUT = scaled(20)


@pytest.fixture
def secure(cluster):
    keys = cluster.path("keys")
    clients = os.path.join(keys, "clients")
    workers = os.path.join(keys, "workers")
    master = cluster.keygen("master", keys)
    ana = cluster.keygen("ana", clients)           # listed: its .pub is in clients/
    worker = cluster.keygen("w1", workers)
    eve = cluster.keygen("eve", cluster.path("outside"))
    cluster.start_master("--curve-secret", master + ".key", "--clients", clients,
                         "--workers", workers)
    cluster.start_worker("w1", 2, "--curve-secret", worker + ".key", "--master-key",
                         master + ".pub")
    cluster.keys = {"master": master, "ana": ana, "w1": worker, "eve": eve}
    return cluster


def test_a_listed_client_key_submits_and_reads(secure):
    k = secure.keys
    c = secure.client(curve_secret=k["ana"] + ".key", master_key=k["master"] + ".pub",
                      timeout=TIMEOUT)
    assert list(c.map("square", range(5))) == [0, 1, 4, 9, 16]


def test_the_master_key_may_be_given_as_z85_text(secure):
    k = secure.keys
    pub = open(k["master"] + ".pub").read().split('"')[1]
    assert len(pub) == 40
    c = secure.client(curve_secret=k["ana"] + ".key", master_key=pub, timeout=TIMEOUT)
    assert c.stats()["workers_alive"] == 1


def test_keys_come_from_the_environment(secure, monkeypatch):
    k = secure.keys
    monkeypatch.setenv("ZTASK_CURVE_SECRET", k["ana"] + ".key")
    monkeypatch.setenv("ZTASK_MASTER_KEY", k["master"] + ".pub")
    monkeypatch.setenv("ZTASK_CONFIG", os.devnull)
    c = secure.client(timeout=TIMEOUT)
    assert c.settings.curve is not None
    assert c.submit(fn="square", args=12).wait(timeout=TIMEOUT)["done"] == 1


def test_keys_and_master_come_from_the_config_file_relative_to_it(secure, monkeypatch):
    cfg = secure.path("keys/config")
    with open(cfg, "w") as f:
        f.write("# a user's config\n"
                f"master = {secure.api}\n"
                "curve-secret = clients/ana.key\n"
                'master-key = "master.pub"\n'
                f"request-timeout = {TIMEOUT}\n")
    monkeypatch.setenv("ZTASK_CONFIG", cfg)
    for var in ("ZTASK_MASTER", "ZTASK_CURVE_SECRET", "ZTASK_MASTER_KEY",
                "ZTASK_REQUEST_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    c = ztask.Client()
    secure.clients.append(c)
    assert c.settings.address == secure.api and c.settings.timeout == TIMEOUT
    assert c.jobs() == []


def test_an_unlisted_key_is_refused_as_an_auth_error(secure):
    k = secure.keys
    c = secure.client(curve_secret=k["eve"] + ".key", master_key=k["master"] + ".pub",
                      timeout=TIMEOUT)
    with pytest.raises(ztask.AuthError) as e:
        c.jobs()
    assert e.value.exit_code == 6
    assert "refused this client's key" in str(e.value)
    secure.master.wait_line(r"event=auth_refused domain=api")


def test_no_keys_against_a_curve_master_is_an_auth_error(secure):
    c = secure.client(timeout=TIMEOUT)
    with pytest.raises(ztask.AuthError, match="requires CURVE keys|hangs up"):
        c.stats()


def test_a_wrong_master_key_is_an_auth_error(secure):
    k = secure.keys
    c = secure.client(curve_secret=k["ana"] + ".key", master_key=k["eve"] + ".pub",
                      timeout=TIMEOUT)
    with pytest.raises(ztask.AuthError, match="master_key"):
        c.workers()


def test_a_worker_key_cannot_act_as_a_client(secure):
    k = secure.keys
    c = secure.client(curve_secret=k["w1"] + ".key", master_key=k["master"] + ".pub",
                      timeout=TIMEOUT)
    with pytest.raises(ztask.AuthError) as e:
        c.submit(fn="noop")
    assert e.value.code == "auth" and "not allowed to act as a client" in e.value.message
    secure.master.wait_line(r"event=request_refused type=submit role=worker")


def test_keys_against_a_plain_master_are_an_auth_error(cluster):
    cluster.start_master()
    master = cluster.keygen("m")
    ana = cluster.keygen("ana")
    c = cluster.client(curve_secret=ana + ".key", master_key=master + ".pub", timeout=TIMEOUT)
    with pytest.raises(ztask.AuthError):
        c.jobs()


def test_a_public_key_file_is_not_a_secret(cluster):
    ana = cluster.keygen("ana")
    with pytest.raises(ztask.UsageError, match="holds no secret-key"):
        ztask.Client("127.0.0.1:1", curve_secret=ana + ".pub", master_key=ana + ".pub")
    with pytest.raises(ztask.UsageError, match="needs both"):
        ztask.Client("127.0.0.1:1", curve_secret=ana + ".key")


def test_a_client_sees_only_its_own_jobs_and_an_admin_sees_all(cluster):
    keys = cluster.path("keys")
    clients, workers, admins = (os.path.join(keys, d) for d in ("clients", "workers", "admins"))
    master = cluster.keygen("master", keys)
    ana = cluster.keygen("ana", clients)
    bob = cluster.keygen("bob", clients)
    root = cluster.keygen("root", admins)
    os.makedirs(workers)
    cluster.start_master("--curve-secret", master + ".key", "--clients", clients,
                         "--workers", workers, "--admins", admins)

    def as_(key):
        return cluster.client(curve_secret=key + ".key", master_key=master + ".pub",
                              timeout=TIMEOUT)

    a, b, r = as_(ana), as_(bob), as_(root)
    job = a.submit(fn="noop", name="anas")   # no worker: it stays queued
    assert [j["job"] for j in a.jobs()] == [job.id]
    assert b.jobs() == []
    with pytest.raises(ztask.RefusedError) as e:
        b.job(job.id).status()
    assert e.value.code == "not_found"
    with pytest.raises(ztask.AuthError):
        b.jobs(all=True)
    everyone = r.jobs(all=True)
    assert [(j["job"], j["owner_name"]) for j in everyone] == [(job.id, "ana")]
    assert r.job(job.id).status()["owner_name"] == "ana"
