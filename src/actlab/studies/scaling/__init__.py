"""Study C6 (scaling): does sigmoid's final-loss deficit against GELU and ReLU^2 grow with model
size and depth? See study.py."""
