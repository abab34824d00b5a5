"""What each differentiation backend costs, measured on one problem (`problem`): gradient
accuracy, memory, time, inner-loop convergence, and the recommendation (`select`)."""
