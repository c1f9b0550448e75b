"""The base every config section shares: typed, documented, strict.

Each field carries a one-line docstring under it; pydantic turns those into the JSON schema's
descriptions (`trainforge config schema`). Unknown keys are rejected, never ignored.
"""

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        use_attribute_docstrings=True,
        validate_assignment=True,
        protected_namespaces=(),
    )
