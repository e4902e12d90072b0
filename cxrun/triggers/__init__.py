"""What creates jobs: starting one (its rows, parameters and plan limits, in the caller's state
transaction), schedules, events, and preparing a job to run here. It may import the runtime
(to run a job it just claimed) and everything below; never ops or a surface."""
