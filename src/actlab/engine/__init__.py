"""The sweep engine: a grid of jobs run once each (local worker processes or Ray), every
outcome kept in one SQLite store per results folder, so a killed sweep resumes."""
