/* Shows the time, to prove the script was served too. */
document.getElementById("clock").textContent = "Page loaded at " + new Date().toLocaleTimeString();
