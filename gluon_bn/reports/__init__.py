"""Tables and plots that every command and notebook shares."""
