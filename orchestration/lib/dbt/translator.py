"""How dbt nodes become Dagster assets: one method per attribute the defaults get wrong."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

from orchestration.lib.specs import LAYER_TAG, Group, Owner

# Model folder -> asset group shown in the UI.
_GROUPS = {
    "staging": Group.STAGING,
    "intermediate": Group.MARTS,
    "marts": Group.MARTS,
    "exports": Group.EXPORTS,
}


def _folder(dbt_resource_props: Mapping[str, Any]) -> str | None:
    """The model's top folder under models/ (fqn: project, folder, ..., name)."""
    fqn = dbt_resource_props.get("fqn", [])
    return fqn[1] if len(fqn) > 2 else None


class OttpDbtTranslator(DagsterDbtTranslator):
    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        # seeds are reference codes the staging tests check against
        if dbt_resource_props["resource_type"] == "seed":
            return Group.STAGING
        folder = _folder(dbt_resource_props) or Group.MARTS
        return _GROUPS.get(folder, folder)

    def get_owners(self, dbt_resource_props: Mapping[str, Any]) -> list[str]:
        return [Owner.ANALYTICS_ENGINEERING]

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        tags = dict(super().get_tags(dbt_resource_props))
        folder = _folder(dbt_resource_props)
        if folder:
            tags[LAYER_TAG] = folder
        return tags


translator = OttpDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_code_references=True))
