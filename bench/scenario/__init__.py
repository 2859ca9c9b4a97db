"""What to do: scenario files, validated, and the models they describe."""
