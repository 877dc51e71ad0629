"""The parts a model is composed of: likelihoods, priors, posteriors, flows and objectives."""
