"""Workflows: YAML DAGs of agent, command, approval and merge steps, run as tasks.

Layout:

=============  ==================================================================
model.py       Workflow, Step, the step and run states
loader.py      YAML -> Workflow, every problem with file:line (`workflow validate`)
expr.py        CEL conditions and `${{ … }}` templates (shell-quoted in commands)
runs.py        the workflow_runs / workflow_steps rows (migration 9)
engine.py      advancing a run: one transaction per advance, idempotent, resumable
effects.py     what an advance cannot do inside its transaction: park, merge
outputs.py     a step's outputs from its task's result JSON, stdout or files
driver.py      `workflow run` in the foreground (no daemon): advance, execute, repeat
plan.py        a planning AI drafts a task DAG or a workflow (`aictl plan`, `workflow suggest`)
=============  ==================================================================

Steps become tasks labelled `workflow-run:<id>` and `workflow-step:<id>`, so leases, locks,
routing, policy, evidence and audit apply to each step unchanged.
"""
