"""The paper's tasks (section 5): median estimation, class counting, molecular property
prediction, with the set models they share (`models`)."""
