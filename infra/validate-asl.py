#!/usr/bin/env python3
"""Checks every state machine definition in template.yaml against the Amazon
States Language schema (asl-validator, installed by infra/python-tools.sh into
.tools/node): cfn-lint and `sam validate` check the resource, not the states.

DefinitionSubstitutions are replaced by placeholder ARNs of their kind, so
the validator sees a definition as Step Functions will after deployment."""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
VALIDATOR = ROOT / ".tools/node/node_modules/.bin/asl-validator"


class Loader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}


Loader.add_multi_constructor("!", _tag)


def substitute(value, names):
    if isinstance(value, str):
        for name in names:
            value = value.replace(
                "${%s}" % name,
                "arn:aws:lambda:eu-west-1:123456789012:function:placeholder-%s" % name,
            )
        return value
    if isinstance(value, list):
        return [substitute(v, names) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, names) for k, v in value.items()}
    return value


def main():
    template = yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)
    machines = {
        name: r["Properties"]
        for name, r in template["Resources"].items()
        if r["Type"] in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
    }
    if not machines:
        print("no state machine in template.yaml", file=sys.stderr)
        return 1
    failed = 0
    for name, props in machines.items():
        definition = substitute(props["Definition"], props.get("DefinitionSubstitutions", {}))
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(definition, f)
            f.flush()
            run = subprocess.run([str(VALIDATOR), "--json-path", f.name], capture_output=True, text=True)
        print(f"{name}: {(run.stdout + run.stderr).strip()}")
        failed += run.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
