"""Training, with torch: procedural clips (data), the Video DiT (model), the diffusion loss and sampler
(diffusion), ensembles of stacked members and their optimiser (ensemble, ensemble_reference), a group's step
(step), a group's training with its pause state (train), how long steps and runs take (timing), and the
resumable, deadline-aware sweep runner (sweep)."""
