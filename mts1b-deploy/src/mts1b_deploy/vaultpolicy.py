"""The Vault policies the bootstrap writes: one read-only policy per service, one for reruns.

Why these and no more: a service reads its own ``secret/mts1b/<service>`` and nothing else (a
compromised OMS cannot read the brokers' keys); the deploy policy lets a later ``vault
bootstrap`` (after the root token is revoked) manage exactly the mounts, policies, AppRoles and
KV paths the bootstrap owns - it cannot read other mounts, change audit devices or seal.
"""

from __future__ import annotations

__all__ = ["DEPLOY_POLICY", "KV_MOUNT", "deploy_policy", "service_policy",
           "service_policy_name", "service_role_name"]

KV_MOUNT = "secret"
DEPLOY_POLICY = "mts1b-deploy"


def service_policy_name(service: str) -> str:
    return f"mts1b-{service}"


def service_role_name(service: str) -> str:
    return f"mts1b-{service}"


def service_policy(service: str, mount: str = KV_MOUNT) -> str:
    """Read-only access to ``<mount>/mts1b/<service>`` (KV v2: its data and metadata)."""
    return (f'path "{mount}/data/mts1b/{service}" {{\n  capabilities = ["read"]\n}}\n'
            f'path "{mount}/metadata/mts1b/{service}" {{\n  capabilities = ["read"]\n}}\n')


def deploy_policy(mount: str = KV_MOUNT) -> str:
    """What a rerun of the bootstrap needs, and nothing it does not."""
    rules = {
        "sys/mounts": ["read"],
        f"sys/mounts/{mount}": ["create", "read", "update", "sudo"],
        f"sys/mounts/{mount}/tune": ["read", "update", "sudo"],
        "sys/auth": ["read"],
        "sys/auth/approle": ["create", "read", "update", "sudo"],
        "sys/policies/acl": ["list"],
        "sys/policies/acl/mts1b-*": ["create", "read", "update"],
        "auth/approle/role": ["list"],
        "auth/approle/role/mts1b-*": ["create", "read", "update"],
        "auth/approle/role/mts1b-*/role-id": ["read"],
        "auth/approle/role/mts1b-*/secret-id": ["create", "update"],
        f"{mount}/config": ["create", "read", "update"],
        f"{mount}/data/mts1b/*": ["create", "read", "update"],
        f"{mount}/metadata/mts1b/*": ["read", "list"],
    }
    return "".join(f'path "{path}" {{\n  capabilities = {_hcl_list(caps)}\n}}\n'
                   for path, caps in rules.items())


def _hcl_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"
