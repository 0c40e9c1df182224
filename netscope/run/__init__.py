"""Running a model, the one way: ``prepare`` (device, dtype, inputs, memory estimate, meta -> fake retry),
then ``trace`` (one forward pass: every module call recorded, one dispatch mode), with ``model_state`` leaving the
user's model exactly as it was and ``no_memory`` building copies whose tensors live on the meta device."""
