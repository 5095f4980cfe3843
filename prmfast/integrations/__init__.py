"""prmfast inside other trainers (docs/integrations.md). Each submodule imports its trainer:
`prmfast.integrations.verl` needs the verl package (requirements-verl.txt)."""
