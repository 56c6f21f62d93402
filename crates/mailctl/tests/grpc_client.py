"""A gRPC client we did not write (Python grpcio, stubs generated from the
proto at run time) calling health and Admin on a running store.

usage: grpc_client.py PROTO_ROOT STORE_ADDR SECRET_FILE DEMO_PASSWORD
Prints one line per check; exits non-zero on the first failure.
"""
import os
import sys
import tempfile

import grpc
from grpc_tools import protoc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main():
    proto_root, addr, secret_file, demo_password = sys.argv[1:5]
    out = tempfile.mkdtemp()
    rc = protoc.main([
        # Compiled from its own folder: a top-level "mailbox" package would
        # clash with Python's standard mailbox module.
        "protoc", f"-I{os.path.join(proto_root, 'mailbox/v1')}",
        f"--python_out={out}", f"--grpc_python_out={out}", "mailbox.proto",
    ])
    assert rc == 0, f"protoc failed: {rc}"
    sys.path.insert(0, out)
    import mailbox_pb2 as pb
    import mailbox_pb2_grpc as rpc

    secret = open(secret_file).read().strip()
    md = [("x-service-token", secret)]
    ch = grpc.insecure_channel(addr)

    health = health_pb2_grpc.HealthStub(ch)
    r = health.Check(health_pb2.HealthCheckRequest(service=""))
    assert r.status == health_pb2.HealthCheckResponse.SERVING, r
    r = health.Check(health_pb2.HealthCheckRequest(service="mailbox.v1.Admin"))
    assert r.status == health_pb2.HealthCheckResponse.SERVING, r
    print("health SERVING")

    admin = rpc.AdminStub(ch)
    try:
        admin.ListDomains(pb.ListDomainsRequest())
        raise AssertionError("Admin answered without the service secret")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
    print("admin without secret UNAUTHENTICATED")

    admin.AddDomain(pb.AddDomainRequest(name="python.example"), metadata=md)
    domains = admin.ListDomains(pb.ListDomainsRequest(), metadata=md).domains
    assert "python.example" in domains and "example.test" in domains, domains
    admin.AddAccount(pb.AddAccountRequest(address="py@python.example", password="py-secret"), metadata=md)
    accounts = [a.address for a in admin.ListAccounts(pb.ListAccountsRequest(domain="python.example"), metadata=md).accounts]
    assert accounts == ["py@python.example"], accounts
    stats = admin.Stats(pb.StatsRequest(), metadata=md)
    assert stats.backend == "sqlite" and stats.accounts >= 2, stats
    print(f"admin ok: domains={list(domains)} accounts={stats.accounts}")

    mbox = rpc.MailboxStub(ch)
    tok = mbox.Authenticate(pb.AuthenticateRequest(
        username="demo@example.test", password=demo_password, client_ip="127.0.0.1", protocol="py"),
        metadata=md).session_token
    names = [m.name for m in mbox.ListMailboxes(
        pb.ListMailboxesRequest(), metadata=md + [("authorization", "Bearer " + tok)]).mailboxes]
    assert "INBOX" in names and "Sent" in names, names
    print(f"demo login ok: {names}")


if __name__ == "__main__":
    main()
