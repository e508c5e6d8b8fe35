"""Every mutation declares who may call it and how it fails; the schema says so."""

from __future__ import annotations

import pytest
import strawberry
from strawberry.permission import PermissionExtension
from strawberry.types.base import StrawberryObjectDefinition

from graph.errors import DomainErrors, camel_case
from graph.permissions import Managers, RoleSet, mutation
from graph.schema import build_schema
from limits import ResourceRegistry, create_plugin_manager


def _schema() -> strawberry.Schema:
    return build_schema(ResourceRegistry(create_plugin_manager()))


def test_every_mutation_declares_a_permission_and_its_errors() -> None:
    mutation_type = _schema().schema_converter.type_map["Mutation"].definition
    assert isinstance(mutation_type, StrawberryObjectDefinition)
    assert mutation_type.fields
    for field in mutation_type.fields:
        kinds = {type(extension) for extension in field.extensions}
        assert PermissionExtension in kinds, field.name
        assert DomainErrors in kinds, field.name
        permissions = [
            permission
            for extension in field.extensions
            if isinstance(extension, PermissionExtension)
            for permission in extension.permissions
        ]
        assert len(permissions) == 1 and isinstance(permissions[0], RoleSet), field.name
        assert field.description and permissions[0].requirement() in field.description


def test_the_schema_says_which_roles_a_mutation_needs() -> None:
    text = _schema().as_str()
    assert "Requires one of the roles: owner, admin." in text
    assert "Requires a service key, or one of the roles: owner, admin." in text
    assert "Requires one of the roles: owner, admin, billing." in text


def test_error_codes_are_an_enum() -> None:
    text = _schema().as_str()
    assert "code: ErrorCode!" in text
    assert "code: String!" not in text


def test_a_mutation_without_a_description_is_refused() -> None:
    async def resolver() -> str:
        return ""

    with pytest.raises(TypeError, match="needs a description"):
        mutation(resolver, description=" ", permission=Managers)


def test_a_mutation_without_an_error_union_is_refused() -> None:
    async def plain() -> str:
        return ""

    @strawberry.type
    class Query:
        ok: str = "ok"

    @strawberry.type
    class Mutation:
        plain_field = mutation(plain, description="Plain.", permission=Managers)

    with pytest.raises(TypeError, match="needs a result union"):
        strawberry.Schema(query=Query, mutation=Mutation)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("address_line1", "addressLine1"), ("idempotency_key", "idempotencyKey"), ("email", "email")],
)
def test_field_names_become_camel_case_at_the_boundary(name: str, expected: str) -> None:
    assert camel_case(name) == expected
