"""Bounded work per GraphQL request: the cost of an operation, page sizes, and clean text.

Before anything executes, the operation is walked with its variables:

- every field costs 1, and the fields that do more work cost more (`FIELD_COSTS`); a field
  under a page (`first: n`) is counted once per item of the page; an operation that costs
  more than `MAX_COST` is refused with `QUERY_TOO_COMPLEX`, naming its cost and the limit;
- every `first` argument (a page of a connection) must be 1 to `MAX_PAGE`: `BAD_USER_INPUT`
  naming the field, instead of a failure halfway through that nulls its parent;
- text, inline or in the variables, with a NUL or a character that is not valid Unicode
  (a lone surrogate) is refused with `BAD_USER_INPUT` naming the argument or variable.

Depth, aliases and tokens are bounded by the validation rules and parser options of
`graph.schema`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    ExecutionResult,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    get_named_type,
    value_from_ast,
)
from graphql.pyutils import Undefined
from strawberry.extensions import SchemaExtension

from billing.services import MAX_PAGE
from graph.scalars import bad_text_in, text_problem

MAX_COST = 1_000
"""The most an operation may cost: about ten statistics or a thousand plain fields."""

FIELD_COSTS: dict[str, int] = {
    "Organization.usageStats": 100,
    "Organization.planRecommendations": 20,
    "Organization.invoices": 5,
    "Organization.usage": 5,
    "Query.plans": 5,
}
"""Fields that cost more than 1: they read more rows or compute more."""

_ROOT_OF = {"query": "query_type", "mutation": "mutation_type", "subscription": "subscription_type"}


def bad_user_input(message: str, field: str | None = None) -> GraphQLError:
    """An expected error in the request itself, shown as is."""
    extensions: dict[str, Any] = {"code": "BAD_USER_INPUT"}
    if field is not None:
        extensions["field"] = field
    return GraphQLError(message, extensions=extensions)


def _literal_strings(node: ValueNode) -> Iterator[str]:
    if isinstance(node, StringValueNode):
        yield node.value
    elif isinstance(node, ListValueNode):
        for item in node.values:
            yield from _literal_strings(item)
    elif isinstance(node, ObjectValueNode):
        for field in node.fields:
            yield field.name.value
            yield from _literal_strings(field.value)


@dataclass
class _Walk:
    schema: GraphQLSchema
    fragments: dict[str, FragmentDefinitionNode]
    variables: dict[str, Any]

    def cost(self, selections: SelectionSetNode | None, parent: GraphQLNamedType) -> int:
        """The cost of a selection set on `parent`; checks pages and text on the way."""
        if selections is None:
            return 0
        total = 0
        for selection in selections.selections:
            if isinstance(selection, FieldNode):
                total += self.field_cost(selection, parent)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                on = self.schema.get_type(condition.name.value) if condition else parent
                total += self.cost(selection.selection_set, on or parent)
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments.get(selection.name.value)
                if fragment is not None:
                    on = self.schema.get_type(fragment.type_condition.name.value)
                    total += self.cost(fragment.selection_set, on or parent)
        return total

    def field_cost(self, node: FieldNode, parent: GraphQLNamedType) -> int:
        name = node.name.value
        fields = (
            parent.fields if isinstance(parent, GraphQLObjectType | GraphQLInterfaceType) else {}
        )
        definition = None if name.startswith("__") else fields.get(name)
        if definition is None:
            return 1
        where = f"{parent.name}.{name}"
        page = 1
        for argument in node.arguments or ():
            argument_name = argument.name.value
            for text in _literal_strings(argument.value):
                problem = text_problem(text)
                if problem:
                    raise bad_user_input(f"{where}({argument_name}:) {problem}", argument_name)
            if argument_name == "first" and argument_name in definition.args:
                page = self.page_size(argument.value, definition.args["first"].type, where)
        own = FIELD_COSTS.get(where, 1)
        return own + page * self.cost(node.selection_set, get_named_type(definition.type))

    def page_size(self, node: ValueNode, type_: Any, where: str) -> int:
        size = value_from_ast(node, type_, self.variables)
        if size is Undefined or size is None:
            return 10
        if not isinstance(size, int) or not 1 <= size <= MAX_PAGE:
            raise bad_user_input(f"{where}(first:) must be 1 to {MAX_PAGE}, not {size}", "first")
        return size


def operation_cost(
    schema: GraphQLSchema,
    document: Any,
    operation_name: str | None,
    variables: dict[str, Any] | None,
) -> int:
    """The cost of the operation `operation_name` of `document`; raises a GraphQLError for
    a page out of bounds or unacceptable text."""
    variables = variables or {}
    found = bad_text_in(variables, "$")
    if found:
        path, problem = found
        name = path.removeprefix("$.")
        raise bad_user_input(f"variable ${name} {problem}", name)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    chosen = [
        o
        for o in operations
        if operation_name is None or (o.name is not None and o.name.value == operation_name)
    ]
    if not chosen:
        return 0
    operation = chosen[0]
    root = getattr(schema, _ROOT_OF[operation.operation.value])
    if root is None:
        return 0
    return _Walk(schema, fragments, variables).cost(operation.selection_set, root)


class QueryBudget(SchemaExtension):
    """Refuses, before execution, an operation over `MAX_COST`, a page out of bounds or
    unacceptable text (see the module's docstring)."""

    max_cost = MAX_COST

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context
        if context.graphql_document is not None and context.result is None:
            try:
                cost = operation_cost(
                    self.execution_context.schema._schema,
                    context.graphql_document,
                    context.operation_name,
                    context.variables,
                )
                if cost > self.max_cost:
                    raise GraphQLError(
                        f"the query costs {cost}, over the limit of {self.max_cost}: ask for "
                        "fewer fields, smaller pages or fewer statistics per request",
                        extensions={"code": "QUERY_TOO_COMPLEX", "cost": cost},
                    )
            except GraphQLError as error:
                context.result = ExecutionResult(data=None, errors=[error])
        yield
