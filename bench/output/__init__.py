"""What people read: terminal tables, the HTML report, exports."""
