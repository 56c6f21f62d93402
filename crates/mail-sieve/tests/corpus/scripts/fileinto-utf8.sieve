require "fileinto";
fileinto "Réunions/Équipe";
