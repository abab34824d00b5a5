"""What the backend suites and the paper's tasks share: reports (`results`), command-line
conventions (`cli`), the strategies by name (`strategies`), the training loop (`training`), the
data (`data`) and the peer implementations timed against ours (`peers`)."""
