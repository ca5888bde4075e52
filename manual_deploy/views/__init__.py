"""Rendering, called only from `manual_deploy/commands/`: domain modules return data, a view turns it into text."""
