"""The pieces of the runbook's JSON Schema: step controls, params, targets, templates.

:class:`kdiag.language.catalog.StepCatalog` composes them with each step type's fragment.

``kdiag schema`` prints it, ``schemas/runbook.schema.json`` is a checked-in copy (a test keeps it
current) and editors use it through ``# yaml-language-server: $schema=...``. Validation uses the
same dict, piece by piece, so the two cannot drift.
"""

from __future__ import annotations

from kdiag.language.schemacheck import Schema

SCHEMA_ID = "urn:kdiag:runbook:v1"
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
DURATION = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)$"
TEMPLATE = r"\{\{|\{%"
POD_TARGET = (r"^((pods?|po|(deployments?|statefulsets?|daemonsets?|replicasets?)(\.apps)?"
              r"|deploy|sts|ds|rs|jobs?(\.batch)?|services?|svc)/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")

TEMPLATE_DEF: Schema = {
    "title": "a {{ template }}",
    "type": "string",
    "pattern": TEMPLATE,
}
DURATION_DEF: Schema = {
    "title": "a duration",
    "description": "Seconds as a number, or a string such as 500ms, 30s, 5m, 1h.",
    "anyOf": [
        {"type": "number", "minimum": 0},
        {"type": "string", "pattern": DURATION, "title": "a duration like 30s, 5m or 500ms"},
        {"$ref": "#/$defs/template"},
    ],
}
EXPRESSION: Schema = {
    "type": "string",
    "minLength": 1,
    "description": "A Jinja expression without {{ }}, e.g. resp.status == 200",
}

CONTROLS: dict[str, Schema] = {
    "name": {"type": "string", "minLength": 1, "description": "Unique name of the step."},
    "description": {"type": "string"},
    "when": {"anyOf": [EXPRESSION, {"type": "boolean"}],
             "description": "Run the step only when this expression is true."},
    "register": {"type": "string", "pattern": IDENTIFIER, "title": "an identifier",
                 "description": "Keep the step's result under this name for later steps."},
    "timeout": {"$ref": "#/$defs/duration", "description": "Fail the step after this long."},
    "retries": {"anyOf": [{"type": "integer", "minimum": 0}, {"$ref": "#/$defs/template"}],
                "description": "Run the step again up to this many times until it succeeds."},
    "until": {**EXPRESSION, "description": "Retry until this expression is true."},
    "delay": {"$ref": "#/$defs/duration", "description": "Wait between retries (default 1s)."},
    "continue_on_error": {"type": "boolean",
                          "description": "A failure of this step does not fail the run."},
    "parallel": {"anyOf": [{"type": "integer", "minimum": 1}, {"$ref": "#/$defs/template"}],
                 "description": "With a pick: all target, on how many pods at once a manager "
                                "step runs (default 10)."},
    "background": {"type": "boolean",
                   "description": "Keep what the step starts running until the run ends."},
    "assert": {"anyOf": [EXPRESSION, {"type": "array", "items": EXPRESSION, "minItems": 1}],
               "description": "Expressions that must all be true after the step."},
    "secret": {"anyOf": [{"type": "boolean"},
                         {"type": "array", "items": EXPRESSION, "minItems": 1}],
               "description": "The step reads a secret: its output is withheld from the console, "
                              "reports and artifacts, and what it registers is masked from then "
                              "on (true: every value of its result; a list: the values of these "
                              "expressions, e.g. result.json.token)."},
}

PARAM_DEF: Schema = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "type": {"enum": ["string", "integer", "number", "boolean", "list", "object"],
                 "description": "The value's type (default string)."},
        "default": {"description": "Used when the param is not set; no default: required."},
        "description": {"type": "string"},
        "secret": {"type": "boolean", "description": "Mask the value in all output."},
        "choices": {"type": "array", "minItems": 1, "description": "The allowed values."},
    },
}

NODE_TARGET: Schema = {
    "type": "object",
    "additionalProperties": False,
    "description": "A process on this Linux host.",
    "properties": {
        "pid": {"anyOf": [{"type": "integer", "minimum": 1}, {"$ref": "#/$defs/template"}],
                "description": "The target process."},
    },
    "required": ["pid"],
}

KUBERNETES_TARGET: Schema = {
    "type": "object",
    "additionalProperties": False,
    "description": "A pod (or pods) in a Kubernetes cluster.",
    "properties": {
        "namespace": {"type": "string"},
        "pod": {"anyOf": [
            {"type": "string", "pattern": POD_TARGET, "title": "a pod name or TYPE/NAME (pod, "
             "deployment/deploy, statefulset/sts, daemonset/ds, replicaset/rs, job, "
             "service/svc)"},
            {"$ref": "#/$defs/template"}],
            "description": "A pod name, or TYPE/NAME as kubectl takes it (deploy/api, svc/api, "
                           "...): the pods of a workload or behind a Service."},
        "selector": {"type": "string", "description": "A label selector, e.g. app=api."},
        "container": {"type": "string", "description": "Default: the default-container "
                      "annotation, else the first container."},
        "pick": {"enum": ["newest", "oldest", "all"], "description": "Which pod when a "
                 "selector matches several (default newest)."},
        "context": {"type": "string", "description": "The kubeconfig context."},
        "kubeconfig": {"type": "string", "description": "A kubeconfig file (default: "
                       "$KUBECONFIG, ~/.kube/config, else in-cluster)."},
        "image": {"type": "string", "description": "The manager image; a repository gets "
                  "kdiag's version as tag (default: $KDIAG_MANAGER_IMAGE, manager_image in "
                  "~/.config/kdiag/config.yaml, else kdiag.local/manager:VERSION)."},
        "image_pull_policy": {"enum": ["Always", "IfNotPresent", "Never"],
                              "description": "Default: $KDIAG_MANAGER_PULL_POLICY, "
                                             "manager_pull_policy in the settings file, else "
                                             "IfNotPresent."},
        "privileged": {"type": "boolean", "description": "Run the manager privileged "
                       "(default: only the capabilities it needs)."},
        "timeout": {"$ref": "#/$defs/duration",
                    "description": "How long to wait for the manager to start."},
        "copy": {"anyOf": [{"type": "boolean"}, {
            "type": "object", "additionalProperties": False, "properties": {
                "command": {"anyOf": [{"type": "array", "items": {"type": "string"}},
                                      {"type": "string"}],
                            "description": "The chosen container's command in the copy "
                                           "(default: kept alive by a sleep)."},
                "image": {"type": "string", "description": "Another image for the chosen "
                          "container in the copy."}}}],
            "description": "Debug a copy of the pod (for a pod that crashes at start): same "
                           "spec, the container's command replaced, no probes, labels that "
                           "no Service or controller selects. Deleted at the end of the run."},
        "keep_copy": {"type": "boolean", "description": "Leave the copy after the run "
                      "(labelled kdiag.dev/kept=true)."},
        "node": {"type": "string", "description": "The node itself: the manager in a "
                 "privileged pod on it (created in `namespace`) with the host's PID and network "
                 "namespaces; deleted at the end."},
        "node_namespace": {"type": "string", "description": "Where the privileged pods on "
                           "nodes (`node`, `via: node`) are created: a namespace whose Pod "
                           "Security level allows them, e.g. one kept for debugging (default: "
                           "the target's namespace)."},
        "via": {"enum": ["ephemeral", "node", "auto"], "description": "How the manager "
                "reaches the pod: an ephemeral container (default), through a privileged pod on "
                "its node that enters the container's namespaces, or auto (ephemeral, else "
                "through the node when the ephemeral container is refused)."},
    },
}


def _templatable(schema: Schema, *, top: bool = False) -> Schema:
    """Let every non-string value inside a fragment also be given as a template string.

    The body itself (``top``) keeps its shape: a step's body is never one template.
    """
    schema = dict(schema)
    for key in ("properties",):
        if key in schema:
            schema[key] = {name: _templatable(sub) for name, sub in schema[key].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = _templatable(schema[key])
    for key in ("anyOf", "oneOf"):
        if key in schema and all("type" in o or "$ref" in o for o in schema[key]):
            options = [_templatable(o) for o in schema[key]]
            if not top and not any(o.get("type") == "string"
                                   or o.get("$ref") == "#/$defs/template" for o in options):
                options.append({"$ref": "#/$defs/template"})
            schema[key] = options
            return schema
    kind = schema.get("type")
    names = kind if isinstance(kind, list) else [kind] if kind else []
    if names and "string" not in names and not top:
        meta: Schema = {k: schema.pop(k) for k in ("description", "default", "title") if k in schema}
        return {**meta, "anyOf": [schema, {"$ref": "#/$defs/template"}]}
    return schema


def step_def(kind: str, fragment: Schema, summary: str) -> Schema:
    """The schema of a whole step of one type: the controls plus the type's body."""
    return {
        "type": "object",
        "description": summary,
        "additionalProperties": False,
        "required": [kind],
        "properties": {**CONTROLS, kind: _templatable(fragment, top=True)},
    }


def steps_list(description: str) -> Schema:
    """A list of steps (each one checked against ``#/$defs/step``)."""
    return {"type": "array", "items": {"$ref": "#/$defs/step"}, "description": description}
